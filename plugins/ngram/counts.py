"""Counting n-grams of an id stream into sorted integer keys, no Python tuples.

An n-gram of order k is stored as ``key = index_of_its_prefix_in_order_k-1 * V + last_word``
(order 1: the word id itself), so each order is one sorted ``uint64`` array, the children of a
context are one contiguous run, and lookups are ``np.searchsorted``. Following KenLM there is one
``<s>`` per sentence: no n-gram reaches back past it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.model import sentence_starts
from engine.vocab import BOS_ID


@dataclass
class OrderCounts:
    keys: np.ndarray  # uint64, sorted; order 1: arange(V)
    counts: np.ndarray  # int64, raw occurrences
    suffix: np.ndarray | None  # int64 index in order k-1 of the n-gram without its first word
    starts_bos: np.ndarray  # bool, the n-gram begins with <s>


@dataclass
class NgramCounts:
    vocab_size: int
    orders: list[OrderCounts]
    last_suffixes: list[int]  # KenLM quirk, see kneser_ney.count_of_counts: index per order k < N, or -1


def last_in_lmplz_order(ids: np.ndarray, depth: np.ndarray, order: int) -> int:
    """Position of the N-gram lmplz sorts last: left-padded with <s>, compared by last word id,
    then the one before, and so on."""
    candidates = np.flatnonzero(ids != BOS_ID)
    for back in range(order):
        if len(candidates) <= 1:
            break
        words = np.where(depth[candidates] >= back, ids[candidates - np.minimum(back, depth[candidates])], BOS_ID)
        candidates = candidates[words == words.max()]
    return int(candidates[0]) if len(candidates) else -1


def count_ngrams(ids: np.ndarray, order: int, vocab_size: int) -> NgramCounts:
    """Raw counts of every n-gram of orders 1..``order`` in ``ids`` (sentences ``<s> ... </s>``)."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    depth = np.arange(n) - sentence_starts(ids)  # 0 at <s>, 1 at the first word, ...
    V = np.uint64(vocab_size)
    unigram_counts = np.bincount(ids, minlength=vocab_size).astype(np.int64)
    starts_bos = np.zeros(vocab_size, dtype=bool)
    starts_bos[BOS_ID] = True
    orders = [OrderCounts(np.arange(vocab_size, dtype=np.uint64), unigram_counts, None, starts_bos)]
    last = last_in_lmplz_order(ids, depth, order)
    last_suffixes = [int(ids[last]) if last >= 0 else -1]
    previous = ids  # index of the (k-1)-gram ending at each position, -1 where none
    for k in range(2, order + 1):
        pos = np.flatnonzero(depth >= k - 1)
        if len(pos) == 0:
            orders.append(OrderCounts(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)))
            last_suffixes.append(-1)
            previous = np.full(n, -1, dtype=np.int64)
            continue
        keys = previous[pos - 1].astype(np.uint64) * V + ids[pos].astype(np.uint64)
        unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        suffix = np.empty(len(unique), dtype=np.int64)
        suffix[inverse] = previous[pos]
        bos = np.zeros(len(unique), dtype=bool)
        bos[inverse] = depth[pos] == k - 1
        orders.append(OrderCounts(unique, counts.astype(np.int64), suffix, bos))
        current = np.full(n, -1, dtype=np.int64)
        current[pos] = inverse
        last_suffixes.append(int(current[last]) if last >= 0 else -1)
        previous = current
    return NgramCounts(vocab_size, orders, last_suffixes[:-1])


def lookup(keys: np.ndarray, context: np.ndarray, words: np.ndarray, V: int) -> np.ndarray:
    """Index of each (context index, word) n-gram in ``keys``, -1 where absent or context is -1."""
    out = np.full(len(words), -1, dtype=np.int64)
    ok = context >= 0
    if not ok.any() or len(keys) == 0:
        return out
    key = context[ok].astype(np.uint64) * np.uint64(V) + words[ok].astype(np.uint64)
    pos = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
    found = keys[pos] == key
    sub = np.full(len(key), -1, dtype=np.int64)
    sub[found] = pos[found]
    out[ok] = sub
    return out

