"""Searching the sorted n-gram keys: what every query needs, apart from the counting (a
process that only queries a model imports this, not ``counts``)."""

from __future__ import annotations

import numpy as np


def lookup(keys: np.ndarray, context: np.ndarray, words: np.ndarray, V: int, clustered: bool = False) -> np.ndarray:
    """Index of each (context index, word) n-gram in ``keys``, -1 where absent or context is -1.
    ``clustered``: the contexts come in ascending order, each one's words in a few ascending
    runs; the keys are then searched as they come (sorting them first would cost more)."""
    out = np.full(len(words), -1, dtype=np.int64)
    ok = context >= 0
    if not ok.any() or len(keys) == 0:
        return out
    key = context[ok].astype(np.uint64) * np.uint64(V) + words[ok].astype(np.uint64)
    pos = np.searchsorted(keys, key) if clustered else sorted_search(keys, key)
    if hasattr(keys, "matches"):  # a model's packed keys (plugins.ngram.packed)
        out[ok] = keys.matches(key, pos)
    else:
        pos = np.minimum(pos, len(keys) - 1)
        out[ok] = np.where(keys[pos] == key, pos, -1)
    return out


def unique_inverse(values: np.ndarray, first: bool = False):
    """``np.unique(values, return_inverse=True, return_counts=True)``, and with ``first`` the
    index of each unique value's first occurrence too (``return_index``), from one sort:
    numpy 2's own ``unique`` took 6-12 times as long on the millions of keys a chunk counts."""
    order, ordered = _sorted_with_order(values, stable=first)
    starts = np.empty(len(values), dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    at = np.flatnonzero(starts)
    starts[:1] = False  # so the running count is each value's unique index
    inverse = np.empty(len(values), dtype=np.intp)
    inverse[order] = np.cumsum(starts.astype(np.intp))  # (a sum over bools is cast item by item: 4x slower)
    counts = np.diff(np.append(at, len(values)))
    if first:
        return ordered[at], order[at], inverse, counts
    return ordered[at], inverse, counts


def _sorted_with_order(values: np.ndarray, stable: bool) -> tuple[np.ndarray, np.ndarray]:
    """(an order that sorts ``values``, stably where ``stable``; the sorted values). Where each
    value's position fits in the bits its value leaves free, both come from one ``np.sort`` of
    value and position packed in one word (the n-gram keys of a chunk or a merge block: 2-3
    times faster than ``argsort`` and the gather after it, and stable)."""
    n = len(values)
    shift = max(n - 1, 1).bit_length()
    if n and values.dtype.kind in "iu" and values.min() >= 0 and int(values.max()) >> (64 - shift) == 0:
        packed = np.sort(values.astype(np.uint64) << np.uint64(shift) | np.arange(n, dtype=np.uint64))
        return (packed & np.uint64((1 << shift) - 1)).astype(np.intp), (packed >> np.uint64(shift)).astype(values.dtype)
    order = np.argsort(values, kind="stable" if stable else None)
    return order, values[order]


def sorted_search(keys: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """``np.searchsorted(keys, needles)``, the needles searched in ascending order: each search
    then starts from the previous answer and reads memory nearby, about three times faster on
    a large model even with the sort paid."""
    if len(needles) < 64:
        return np.searchsorted(keys, needles)
    order, ordered = _sorted_with_order(needles, stable=False)
    found = np.empty(len(needles), dtype=np.intp)
    found[order] = np.searchsorted(keys, ordered)
    return found
