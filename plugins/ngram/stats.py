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
import threading
from dataclasses import dataclass

import numpy as np

from engine.distribution import TIE
from engine.vocab import BOS_ID
from plugins.ngram.search import lookup, sorted_search, unique_inverse

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
    u32, lp32 = np.asarray(model.logp[0], dtype=np.float32), np.asarray(model.logp[1], dtype=np.float32)  # (an 8-bit model's decoded once)
    u = u32.astype(np.float64)
    keys = np.asarray(model.keys[1])  # (packed keys unpacked: every bigram is read here)
    ctx = (keys // np.uint64(V)).astype(np.int64)
    words = (keys % np.uint64(V)).astype(np.int64)
    lp = lp32.astype(np.float64)
    uw = u[words]
    # (ctx ascending, as the keys are: sorted within each context's run as lexsort would, 3-4 times faster)
    lp_sorted = _sorted_within(ctx, lp32).astype(np.float64)
    u_sorted = _sorted_within(ctx, u32[words]).astype(np.float64)

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


def bigram_summary(model):
    """The model's bigram summary (``summarise``), made on first use and kept."""
    if model._bigram_summary is None:
        model._bigram_summary = summarise(model)
    return model._bigram_summary


def backoff_token_stats(model, ids: np.ndarray, ending: list[np.ndarray], scored_log10: np.ndarray):
    """(rank, entropy in bits) at every position ``pos`` of ``ids`` not equal to <s>, given
    the n-grams ending at each position (``model._ending_at``).

    Level by level: D_j, the distribution given the contexts up to length j, is the explicit
    continuations of the length-j context and, for every other word, that context's backoff
    plus D_{j-1}. So #{v: D_j(v) > x} = #{continuations above x} + #{v: D_{j-1}(v) > x - b}
    - #{continuations whose D_{j-1} is above x - b}, and the sums that give the entropy follow
    the same way. Level 1 comes from the model's bigram summary; each longer context is worked
    out once however often it recurs ("of the" has thousands of continuations): once a batch,
    and once a process where it has enough continuations to be kept (``_Kept``)."""
    summary = bigram_summary(model)
    V, N = model.V, model.order
    pos = np.flatnonzero(ids != BOS_ID)
    contexts = [ending[j - 1][pos - 1] for j in range(1, N)]  # contexts[j - 1]: of length j, -1 where unknown
    backoffs = [np.where(c >= 0, model.backoff[j][np.maximum(c, 0)].astype(np.float64), 0.0) for j, c in enumerate(contexts)]
    c1, bo1 = contexts[0], backoffs[0]
    lo1, hi1 = _runs(model.keys[1], c1, V)
    scale = 10**bo1
    E0 = summary.p_sum[c1] + scale * (summary.U0 - summary.u_sum[c1])  # sum of 10^D1
    E1 = summary.pl_sum[c1] + scale * ((summary.U1 - summary.ul_sum[c1]) + bo1 * (summary.U0 - summary.u_sum[c1]))  # of 10^D1 D1
    # Thresholds, top level first: x_j for level j is the word's value less the backoffs above j.
    x = [None] * N
    x[N - 1] = scored_log10[pos] + TIE
    for j in range(N - 1, 1, -1):
        x[j - 1] = x[j] - backoffs[j - 1]
    unigram_part = len(summary.unigram_sorted) - np.searchsorted(summary.unigram_sorted, x[1] - bo1, side="right")
    rank = 1 + count_greater(summary.lp_sorted, lo1, hi1, x[1]) + unigram_part - count_greater(summary.u_sorted, lo1, hi1, x[1] - bo1)
    for j in range(2, N):
        for at, lo, hi, sums, table in _level_parts(model, j, contexts[:j]):
            bo = backoffs[j - 1][at]
            rank[at] += count_greater(table.p_sorted, lo, hi, x[j][at])
            rank[at] -= count_greater(table.low_sorted, lo, hi, x[j - 1][at])
            e0, e1 = E0[at], E1[at]
            E0[at] = sums[0] + 10**bo * (e0 - sums[2])
            E1[at] = sums[1] + 10**bo * (e1 + bo * e0 - sums[3] - bo * sums[2])
    return pos, rank, -LOG2_10 * E1


@dataclass
class _Table:
    """Contexts of one length worked out for ranking: each one's continuations' values (p, and
    D_{j-1} of the same words) sorted within its run ``[lo, hi)`` of ``p_sorted`` and
    ``low_sorted``, and their sums (10^p, 10^p p, 10^low, 10^low low)."""

    contexts: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    sums: np.ndarray  # (4, contexts)
    p_sorted: np.ndarray
    low_sorted: np.ndarray

    def rows(self, contexts: np.ndarray) -> np.ndarray:
        """Each context's row, -1 where absent (``self.contexts`` ascending)."""
        at = np.minimum(np.searchsorted(self.contexts, contexts), max(len(self.contexts) - 1, 0))
        found = self.contexts[at] == contexts if len(self.contexts) else np.zeros(len(contexts), dtype=bool)
        return np.where(found, at, -1)


def _level_parts(model, j: int, contexts: list[np.ndarray]):
    """(positions, runs, sums, table) for the positions whose context of length j is known:
    the contexts worked out in earlier batches (kept with the model), then the others, worked
    out now, once each however often they recur in the batch."""
    c = contexts[j - 1]
    positions = np.flatnonzero(c >= 0)
    if len(positions) == 0:
        return
    unique, first, inverse, _ = unique_inverse(c[positions], first=True)
    kept = model._ranking.setdefault(j, _Kept())
    new = kept.table.rows(unique) < 0
    fresh = None
    if new.any():
        fresh = _work_out(model, j, unique[new], [shorter[positions[first[new]]] for shorter in contexts[:-1]])
        kept.add(fresh)
    table = kept.table  # (what this thread reads, whatever another adds meanwhile)
    row = table.rows(unique)[inverse]
    here = row >= 0
    r = row[here]
    yield positions[here], table.lo[r], table.hi[r], table.sums[:, r], table
    if fresh is not None and not here.all():
        fresh_row = (np.cumsum(new) - 1)[inverse[~here]]  # (every context not kept is a new one)
        yield positions[~here], fresh.lo[fresh_row], fresh.hi[fresh_row], fresh.sums[:, fresh_row], fresh


def _work_out(model, j: int, unique: np.ndarray, lower: list[np.ndarray]) -> _Table:
    """The table of distinct contexts ``unique`` of length j, given each one's shorter
    contexts (``lower[i - 1]`` of length i), rows in the order given."""
    V = model.V
    # Taken in order of their suffix (the context a word shorter): their continuations'
    # lower-order n-grams are then looked up in clusters of ascending keys, with no sort.
    order = np.argsort(lower[-1], kind="stable")
    lo, hi = _runs(model.keys[j], unique[order], V)
    q, idx = _expand(lo, hi)
    words = (model.keys[j][idx] % np.uint64(V)).astype(np.int64)
    p32 = np.asarray(model.logp[j][idx], dtype=np.float32)
    p = p32.astype(np.float64)
    low = _lower_values(model, words, [shorter[order][q] for shorter in lower])
    sums = np.vstack([np.bincount(q, weights=w, minlength=len(unique)) for w in (10**p, 10**p * p, 10**low, 10**low * low)])
    low32 = low.astype(np.float32)
    if np.array_equal(low32, low):  # every value a stored one (no backoff added): sorted as p is, in one sort
        low_sorted = _sorted_within(q, low32).astype(np.float64)
    else:
        low_sorted = _sorted_within_float64(q, low)
    ends = np.cumsum(hi - lo)
    place = np.empty_like(order)
    place[order] = np.arange(len(order))
    return _Table(unique, (ends - (hi - lo))[place], ends[place], sums[:, place], _sorted_within(q, p32), low_sorted)


KEPT_VALUES = 1 << 20  # values kept per context length: 12 MB at most
KEPT_FROM = 8  # continuations a context needs to be kept: fewer are cheaper to work out again


class _Kept:
    """The contexts of one length worked out in earlier batches, kept with the model: a context
    that recurs (the frequent ones, with the most continuations, recur most) is worked out once
    a process, not once a batch. Values are written in place past every run a table handed out
    covers, and the table (contexts ascending) is replaced whole, so threads read without a lock."""

    def __init__(self):
        self.table = _Table(*(np.zeros(0, dtype=np.int64),) * 3, np.zeros((4, 0)), np.zeros(0, dtype=np.float32), np.zeros(0))
        self.filled = 0
        self.lock = threading.Lock()

    def add(self, fresh: _Table) -> None:
        """Keep those of ``fresh``'s contexts worth keeping, while there is room."""
        with self.lock:
            table, sizes = self.table, fresh.hi - fresh.lo
            take = np.flatnonzero((sizes >= KEPT_FROM) & (table.rows(fresh.contexts) < 0))
            take = take[: np.searchsorted(np.cumsum(sizes[take]), KEPT_VALUES - self.filled, side="right")]
            if len(take) == 0:
                return
            if self.filled == 0:
                p_sorted, low_sorted = np.empty(KEPT_VALUES, dtype=np.float32), np.empty(KEPT_VALUES)
            else:
                p_sorted, low_sorted = table.p_sorted, table.low_sorted
            _, idx = _expand(fresh.lo[take], fresh.hi[take])
            ends = self.filled + np.cumsum(sizes[take])
            p_sorted[self.filled : ends[-1]] = fresh.p_sorted[idx]
            low_sorted[self.filled : ends[-1]] = fresh.low_sorted[idx]
            self.filled = int(ends[-1])
            contexts = np.concatenate((table.contexts, fresh.contexts[take]))
            order = np.argsort(contexts)
            runs = [np.concatenate(pair)[order] for pair in ((table.lo, ends - sizes[take]), (table.hi, ends))]
            self.table = _Table(contexts[order], *runs, np.hstack((table.sums, fresh.sums[:, take]))[:, order], p_sorted, low_sorted)


def _sorted_within(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """float32 ``values`` sorted within each of their ``groups`` (the groups in ascending
    order): one sort of 64-bit keys, the group above the value's bits made to sort as the float
    does (several times faster than ``lexsort``)."""
    bits = values.view(np.uint32)
    key = bits ^ np.where(bits >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    ordered = np.sort(groups.astype(np.uint64) << np.uint64(32) | key.astype(np.uint64)).astype(np.uint32)
    return (ordered ^ np.where(ordered >> np.uint32(31), np.uint32(0x80000000), np.uint32(0xFFFFFFFF))).view(np.float32)


def _sorted_within_float64(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` sorted within each of their ``groups`` (below 2^32, in ascending order): each
    value's place among all of them packed under its group and sorted as one word (a sort and
    an argsort, where an order within groups took two argsorts, one stable)."""
    order = np.argsort(values)
    place = np.empty(len(values), dtype=np.uint64)
    place[order] = np.arange(len(values), dtype=np.uint64)
    packed = np.sort(groups.astype(np.uint64) << np.uint64(32) | place)
    return values[order[(packed & np.uint64(0xFFFFFFFF)).astype(np.intp)]]


def _lower_values(model, words: np.ndarray, lower: list[np.ndarray]) -> np.ndarray:
    """D_{j-1}(w) for each word given its contexts ``lower[i - 1]`` of length i = 1..j-1: the
    deepest explicit n-gram's log10 p plus the backoffs of the longer contexts, or the
    unigram's plus all of them."""
    value = np.zeros(len(words))
    todo = np.arange(len(words))  # the words not found yet: in an unpruned model, none after the first level
    shift = np.zeros(len(words))
    for i in range(len(lower), 0, -1):
        c = lower[i - 1][todo]
        idx = lookup(model.keys[i], c, words[todo], model.V, clustered=i == len(lower))  # (see _work_out)
        hit = idx >= 0
        value[todo[hit]] = model.logp[i][idx[hit]].astype(np.float64) + shift[hit]
        todo, c, shift = todo[~hit], c[~hit], shift[~hit]
        if len(todo) == 0:
            return value
        shift += np.where(c >= 0, model.backoff[i - 1][np.maximum(c, 0)].astype(np.float64), 0.0)
    value[todo] = model.logp[0][words[todo]].astype(np.float64) + shift
    return value
