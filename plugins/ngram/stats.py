"""Rank and entropy of every token of a document without building each full distribution.

A backoff model's distribution after a context is the bigram-level distribution of the previous
word, shifted by the longer contexts' backoffs, with the (few) continuations of those longer
contexts overwritten. So per position we need: sums and order statistics of the previous word's
distribution (precomputed once per model from the bigram table, found by binary search within
its run) plus a correction for the explicit longer-context continuations. Everything is
vectorised over positions; the result equals building each distribution (a test checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.distribution import TIE
from engine.vocab import BOS_ID
from plugins.ngram.counts import sorted_search

LOG2_10 = math.log2(10)


@dataclass
class BigramSummary:
    """Per bigram context (a word): its continuations sorted within their run, and sums."""

    lp_sorted: np.ndarray  # log10 p of the continuations, ascending within each context's run
    u_sorted: np.ndarray  # unigram log10 p of the same words, ascending within each run
    p_sum: np.ndarray  # per context: sum 10^lp, sum 10^lp * lp, sum 10^u, sum 10^u * u
    pl_sum: np.ndarray
    u_sum: np.ndarray
    ul_sum: np.ndarray
    unigram_sorted: np.ndarray  # every word's unigram log10 p (no <s>), ascending
    U0: float
    U1: float


def summarise(model) -> BigramSummary:
    V = model.V
    u = model.logp[0].astype(np.float64)
    keys = np.asarray(model.keys[1])  # (packed keys unpacked: every bigram is read here)
    ctx = (keys // np.uint64(V)).astype(np.int64)
    words = (keys % np.uint64(V)).astype(np.int64)
    lp = model.logp[1].astype(np.float64)
    uw = u[words]
    lp_sorted = lp[np.lexsort((lp, ctx))]
    u_sorted = uw[np.lexsort((uw, ctx))]

    def per_context(weights):
        return np.bincount(ctx, weights=weights, minlength=V)

    real = np.ones(V, dtype=bool)
    real[BOS_ID] = False
    uu = u[real]
    return BigramSummary(
        lp_sorted, u_sorted,
        per_context(10**lp), per_context(10**lp * lp), per_context(10**uw), per_context(10**uw * uw),
        np.sort(uu), float((10**uu).sum()), float((10**uu * uu).sum()),
    )


def count_greater(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """For each query, how many of ``values[lo:hi]`` (ascending) exceed ``x`` (binary search)."""
    a, b = lo.copy(), hi.copy()
    last = max(len(values) - 1, 0)
    while True:
        active = a < b
        if not active.any():
            return hi - a
        mid = (a + b) // 2
        right = active & (values[np.minimum(mid, last)] <= x)
        a = np.where(right, mid + 1, a)
        b = np.where(active & ~right, mid, b)


def _runs(keys: np.ndarray, context: np.ndarray, V: int):
    lo = sorted_search(keys, context.astype(np.uint64) * np.uint64(V))
    hi = sorted_search(keys, (context + 1).astype(np.uint64) * np.uint64(V))
    return lo.astype(np.int64), hi.astype(np.int64)


def _expand(lo: np.ndarray, hi: np.ndarray):
    """(query number, table index) for every index in every run [lo, hi)."""
    lengths = hi - lo
    query = np.repeat(np.arange(len(lo)), lengths)
    starts = np.repeat(lo - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return query, starts + np.arange(lengths.sum())


def backoff_token_stats(model, ids: np.ndarray, scored_log10: np.ndarray):
    """(rank, entropy in bits) at every position ``pos`` of ``ids`` not equal to <s>."""
    summary = model._bigram_summary
    if summary is None:
        summary = model._bigram_summary = summarise(model)
    V, N = model.V, model.order
    ending = model._ending_at(ids)
    pos = np.flatnonzero(ids != BOS_ID)
    d_w = scored_log10[pos]
    contexts = [ending[j - 1][pos - 1] for j in range(1, N)]  # context of length j
    # T[j]: sum of the backoffs of the contexts of length >= j that exist.
    T = [np.zeros(len(pos)) for _ in range(N + 1)]
    for j in range(N - 1, 0, -1):
        c = contexts[j - 1]
        T[j] = T[j + 1] + np.where(c >= 0, model.backoff[j - 1][np.maximum(c, 0)].astype(np.float64), 0.0)
    c1 = contexts[0]
    bo1 = model.backoff[0][c1].astype(np.float64)
    lo1, hi1 = _runs(model.keys[1], c1, V)

    def greater_in_level1(x):
        """#{v: D1(v) > x} for the previous word's bigram-level distribution D1."""
        unigram_part = len(summary.unigram_sorted) - np.searchsorted(summary.unigram_sorted, x - bo1, side="right")
        return count_greater(summary.lp_sorted, lo1, hi1, x) + unigram_part - count_greater(summary.u_sorted, lo1, hi1, x - bo1)

    scale = 10**bo1
    E0 = summary.p_sum[c1] + scale * (summary.U0 - summary.u_sum[c1])
    E1 = summary.pl_sum[c1] + scale * ((summary.U1 - summary.ul_sum[c1]) + bo1 * (summary.U0 - summary.u_sum[c1]))

    # Explicit continuations of the longer contexts: the deepest one wins for each word.
    q_parts, w_parts, lvl_parts, val_parts = [], [], [], []
    for j in range(2, N):
        c = contexts[j - 1]
        have = np.flatnonzero(c >= 0)
        lo, hi = _runs(model.keys[j], c[have], V)
        q, idx = _expand(lo, hi)
        q = have[q]
        q_parts.append(q)
        w_parts.append((model.keys[j][idx] % np.uint64(V)).astype(np.int64))
        lvl_parts.append(np.full(len(q), j))
        val_parts.append(model.logp[j][idx].astype(np.float64) + T[j + 1][q])
    T2 = T[2]
    above = T2 if N > 2 else np.zeros(len(pos))
    x = d_w - above + TIE
    rank = 1 + greater_in_level1(x)
    plogp = E1 + above * E0
    plogp = 10**above * plogp
    if q_parts:
        q, w, lvl, val = (np.concatenate(p) for p in (q_parts, w_parts, lvl_parts, val_parts))
        order = np.lexsort((lvl, q * V + w))
        q, w, val = q[order], w[order], val[order]
        last = np.ones(len(q), dtype=bool)
        last[:-1] = (q[1:] != q[:-1]) | (w[1:] != w[:-1])
        q, w, val = q[last], w[last], val[last]
        # Their level-1 value: the bigram (previous word, w) if it exists, else backoff to unigram.
        key = c1[q].astype(np.uint64) * np.uint64(V) + w.astype(np.uint64)
        at = np.minimum(sorted_search(model.keys[1], key), len(model.keys[1]) - 1)
        found = model.keys[1][at] == key
        d1 = np.where(found, model.logp[1][at].astype(np.float64), model.logp[0][w].astype(np.float64) + bo1[q])
        n = len(pos)
        rank += np.bincount(q, weights=val > d_w[q] + TIE, minlength=n).astype(np.int64)
        rank -= np.bincount(q, weights=d1 > x[q], minlength=n).astype(np.int64)
        explicit = np.bincount(q, weights=10**val * val, minlength=n)
        replaced = 10 ** above * (np.bincount(q, weights=10**d1 * d1, minlength=n) + above * np.bincount(q, weights=10**d1, minlength=n))
        plogp = plogp + explicit - replaced
    return pos, rank, -LOG2_10 * plogp
