"""Rank and entropy of every token of a document without building each full distribution.

A backoff model's distribution after a context is the unigram distribution shifted by the
contexts' backoffs, with the explicit continuations of each context, shortest to longest,
written over it. So per position we need, for each of its contexts, the continuations' values
sorted and summed (worked out once however often the context recurs, and kept with the model
for later batches when it has many), and the unigram distribution's. Everything is vectorised
over positions; the result equals building each distribution (a test checks it).

Where the C extension was built at install (``_ranking.c``, optional), it does this work and
the scoring before it (``compiled_token_stats``), context by context, in about 40 % of the time,
on one thread or on two sharing one cache; without a compiler, numpy does it.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from engine.compiled import ALLOWED
from engine.distribution import TIE
from engine.vocab import BOS_ID
from plugins.ngram.packed import CodedValues, PackedKeys, Zeros
from plugins.ngram.search import lookup, sorted_search, unique_inverse

try:
    from plugins.ngram._ranking import Tables
except ImportError:  # (built without a C compiler: numpy ranks the same)
    Tables = None

USE_COMPILED = Tables is not None and ALLOWED
POOL_VALUES = 1 << 21  # continuations' values the compiled cache keeps from call to call: 40 MB a thread

LOG2_10 = math.log2(10)


@dataclass
class RunValues:
    """Values sorted within numbered runs (run numbers ascending along the array), held as one
    sorted array of keys, each a run number above a code that sorts as the value does: how many
    of a run's values exceed a threshold is then one ``np.searchsorted`` for all positions (a
    binary search stepped in numpy took 3-5 times as long). A float32's code is its bits made to
    sort as the float does; float64 values (a lower-order value with backoffs added) are coded
    by their place among all of them (``codebook``, ascending)."""

    keys: np.ndarray  # uint64: run << 32 | code, ascending
    codebook: np.ndarray | None = None

    @classmethod
    def of(cls, runs: np.ndarray, values: np.ndarray) -> "RunValues":
        """``values`` (float32, or float64) in runs numbered ``runs`` (ascending)."""
        values32 = values if values.dtype == np.float32 else values.astype(np.float32)
        if values32 is values or np.array_equal(values32, values):
            return cls(np.sort(runs.astype(np.uint64) << RUN_SHIFT | _float_codes(values32)))
        order = np.argsort(values)
        place = np.empty(len(values), dtype=np.uint64)
        place[order] = np.arange(len(values), dtype=np.uint64)
        return cls(np.sort(runs.astype(np.uint64) << RUN_SHIFT | place), values[order])

    def count_greater(self, runs: np.ndarray, ends: np.ndarray, x: np.ndarray) -> np.ndarray:
        """How many values of each run (numbered ``runs``, ending before index ``ends`` of the
        keys) exceed ``x``: the run's end less the first key past its values at most x."""
        if self.codebook is None:
            x32 = x.astype(np.float32) + np.float32(0)  # (-0.0 made 0.0: its code sorts below 0.0's)
            x32 = np.where(x32 > x, np.nextafter(x32, np.float32(-np.inf)), x32)  # the largest float32 at most x
            below = _float_codes(x32) + np.uint64(1)  # (codes of the values at most x are below this)
        else:
            below = np.searchsorted(self.codebook, x, side="right").astype(np.uint64)
        return ends - sorted_search(self.keys, runs.astype(np.uint64) << RUN_SHIFT | below)


RUN_SHIFT = np.uint64(32)
CODE_MASK = np.uint64(0xFFFFFFFF)


def _float_codes(values: np.ndarray) -> np.ndarray:
    """float32 values as uint64 codes below 2^32 in the values' order (negative floats' bits
    flipped, positive floats' sign bit set)."""
    bits = values.view(np.uint32)
    return (bits ^ np.where(bits >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))).astype(np.uint64)


@dataclass
class UnigramSummary:
    """The unigram distribution (without <s>, never predicted): its values ascending, sum 10^u
    and sum 10^u * u."""

    sorted: np.ndarray
    U0: float
    U1: float


def unigram_summary(model) -> UnigramSummary:
    """The model's unigram summary, made on first use and kept."""
    if model._unigram_summary is None:
        u = np.asarray(model.logp[0], dtype=np.float32).astype(np.float64)  # (an 8-bit model's decoded once)
        u = np.delete(u, BOS_ID)
        model._unigram_summary = UnigramSummary(np.sort(u), float((10**u).sum()), float((10**u * u).sum()))
    return model._unigram_summary


def _runs(keys: np.ndarray, contexts: np.ndarray, V: int):
    """Where the continuations of each context (ascending) start and end in ``keys``."""
    lo = np.searchsorted(keys, contexts.astype(np.uint64) * np.uint64(V))
    hi = np.searchsorted(keys, (contexts + 1).astype(np.uint64) * np.uint64(V))
    return lo.astype(np.int64), hi.astype(np.int64)


def _expand(lo: np.ndarray, hi: np.ndarray):
    """(query number, table index) for every index in every run [lo, hi)."""
    lengths = hi - lo
    query = np.repeat(np.arange(len(lo)), lengths)
    starts = np.repeat(lo - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return query, starts + np.arange(lengths.sum())


def backoff_token_stats(model, ids: np.ndarray, ending: list[np.ndarray], scored_log10: np.ndarray):
    """(rank, entropy in bits) at every position ``pos`` of ``ids`` not equal to <s>, given
    the n-grams ending at each position (``model._ending_at``).

    Level by level: D_j, the distribution given the contexts up to length j, is the explicit
    continuations of the length-j context and, for every other word, that context's backoff
    plus D_{j-1}. So #{v: D_j(v) > x} = #{continuations above x} + #{v: D_{j-1}(v) > x - b}
    - #{continuations whose D_{j-1} is above x - b}, and the sums that give the entropy follow
    the same way, from D_0, the unigram distribution. Each context is worked out once however
    often it recurs ("of the" has thousands of continuations): once a batch, and once a process
    where it has enough continuations to be kept (``_Kept``)."""
    unigrams = unigram_summary(model)
    N = model.order
    pos = np.flatnonzero(ids != BOS_ID)
    contexts = [ending[j - 1][pos - 1] for j in range(1, N)]  # contexts[j - 1]: of length j, -1 where unknown
    backoffs = [np.where(c >= 0, model.backoff[j][np.maximum(c, 0)].astype(np.float64), 0.0) for j, c in enumerate(contexts)]
    # Thresholds, top level first: x_j for level j is the word's value less the backoffs above j.
    x = [None] * N
    x[N - 1] = scored_log10[pos] + TIE
    for j in range(N - 1, 0, -1):
        x[j - 1] = x[j] - backoffs[j - 1]
    rank = 1 + len(unigrams.sorted) - np.searchsorted(unigrams.sorted, x[0], side="right")
    E0, E1 = np.full(len(pos), unigrams.U0), np.full(len(pos), unigrams.U1)  # sum of 10^D_0, of 10^D_0 D_0
    for j in range(1, N):
        for at, rows, table in _level_parts(model, j, contexts[:j]):
            bo, run, end, sums = backoffs[j - 1][at], table.runs[rows], table.ends[rows], table.sums[:, rows]
            rank[at] += table.p.count_greater(run, end, x[j][at])
            rank[at] -= table.low.count_greater(run, end, x[j - 1][at])
            e0, e1 = E0[at], E1[at]
            E0[at] = sums[0] + 10**bo * (e0 - sums[2])
            E1[at] = sums[1] + 10**bo * (e1 + bo * e0 - sums[3] - bo * sums[2])
    return pos, rank, -LOG2_10 * E1


@dataclass
class _Table:
    """Contexts of one length worked out for ranking: each one's continuations' values (p, and
    D_{j-1} of the same words) in a run of ``p`` and ``low`` (its number, where it ends, its
    length), and their sums (10^p, 10^p p, 10^low, 10^low low)."""

    contexts: np.ndarray
    runs: np.ndarray
    ends: np.ndarray
    sizes: np.ndarray
    sums: np.ndarray  # (4, contexts)
    p: RunValues
    low: RunValues

    def rows(self, contexts: np.ndarray) -> np.ndarray:
        """Each context's row, -1 where absent (``self.contexts`` ascending)."""
        at = np.minimum(np.searchsorted(self.contexts, contexts), max(len(self.contexts) - 1, 0))
        found = self.contexts[at] == contexts if len(self.contexts) else np.zeros(len(contexts), dtype=bool)
        return np.where(found, at, -1)


def _level_parts(model, j: int, contexts: list[np.ndarray]):
    """(positions, their rows, table) for the positions whose context of length j is known:
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
    yield positions[here], row[here], table
    if fresh is not None and not here.all():
        yield positions[~here], (np.cumsum(new) - 1)[inverse[~here]], fresh  # (every context not kept is a new one)


def _work_out(model, j: int, unique: np.ndarray, lower: list[np.ndarray]) -> _Table:
    """The table of distinct contexts ``unique`` of length j, given each one's shorter
    contexts (``lower[i - 1]`` of length i), rows in the order given."""
    V = model.V
    # Taken in order of their suffix (the context a word shorter): their continuations'
    # lower-order n-grams are then looked up in clusters of ascending keys, with no sort.
    order = np.argsort(lower[-1], kind="stable") if lower else np.arange(len(unique))
    lo, hi = (bound[order] for bound in _runs(model.keys[j], unique, V))
    q, idx = _expand(lo, hi)
    words = (model.keys[j][idx] % np.uint64(V)).astype(np.int64)
    p32 = np.asarray(model.logp[j][idx], dtype=np.float32)
    p = p32.astype(np.float64)
    low = _lower_values(model, words, [shorter[order][q] for shorter in lower])
    tens_p, tens_low = 10**p, 10**low  # (each power once: they are most of the sums' time)
    sums = np.vstack([np.bincount(q, weights=w, minlength=len(unique)) for w in (tens_p, tens_p * p, tens_low, tens_low * low)])
    place = np.empty_like(order)  # each context's run number: its place in ``order``
    place[order] = np.arange(len(order))
    sizes = (hi - lo)[place]
    return _Table(unique, place, np.cumsum(hi - lo)[place], sizes, sums[:, place], RunValues.of(q, p32), RunValues.of(q, low))


KEPT_VALUES = 1 << 19  # values kept per context length: 8 MB at most (twice as many were no faster on 1M tokens, half as many 20 % slower)
KEPT_FROM = 8  # continuations a context needs to be kept: fewer are cheaper to work out again


class _Kept:
    """The contexts of one length worked out in earlier batches, kept with the model: a context
    that recurs (the frequent ones, with the most continuations, recur most) is worked out once
    a process, not once a batch. Keys are written in place past every run a table handed out
    covers, with run numbers above all before, and the table (contexts ascending) is replaced
    whole, so threads read without a lock."""

    def __init__(self):
        empty = np.zeros(0, dtype=np.int64)
        self.table = _Table(empty, empty, empty, empty, np.zeros((4, 0)), RunValues(empty.astype(np.uint64)), RunValues(empty.astype(np.uint64)))
        self.buffers = None  # (the keys of p and of low, allocated on first use)
        self.filled = 0
        self.lock = threading.Lock()

    def add(self, fresh: _Table) -> None:
        """Keep those of ``fresh``'s contexts worth keeping, while there is room (none of a
        table whose lower-order values carry backoffs: their codes hold only within it)."""
        if fresh.low.codebook is not None:
            return
        with self.lock:
            table = self.table
            take = np.flatnonzero((fresh.sizes >= KEPT_FROM) & (table.rows(fresh.contexts) < 0))
            take = take[: np.searchsorted(np.cumsum(fresh.sizes[take]), KEPT_VALUES - self.filled, side="right")]
            if len(take) == 0:
                return
            take = take[np.argsort(fresh.runs[take])]  # (their runs in the order they lie in the keys)
            if self.buffers is None:
                self.buffers = np.empty(KEPT_VALUES, dtype=np.uint64), np.empty(KEPT_VALUES, dtype=np.uint64)
            p, low = self.buffers
            sizes = fresh.sizes[take]
            q, idx = _expand(fresh.ends[take] - sizes, fresh.ends[take])
            runs = len(table.runs) + np.arange(len(take))  # (numbered after every kept run)
            ends = self.filled + np.cumsum(sizes)
            filled = int(ends[-1])
            relabel = runs[q].astype(np.uint64) << RUN_SHIFT
            p[self.filled : filled] = relabel | fresh.p.keys[idx] & CODE_MASK
            low[self.filled : filled] = relabel | fresh.low.keys[idx] & CODE_MASK
            self.filled = filled
            contexts = np.concatenate((table.contexts, fresh.contexts[take]))
            order = np.argsort(contexts)
            columns = [np.concatenate(pair)[order] for pair in ((table.runs, runs), (table.ends, ends), (table.sizes, sizes))]
            sums = np.hstack((table.sums, fresh.sums[:, take]))[:, order]
            self.table = _Table(contexts[order], *columns, sums, RunValues(p[:filled]), RunValues(low[:filled]))


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


# -- the compiled path (_ranking.c) ----------------------------------------------------------
VALUE_KINDS = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.uint8): 2, np.dtype(np.uint16): 3, np.dtype(np.uint32): 4}
ZERO_KIND = 5


def compiled_token_stats(model, ids: np.ndarray, threads: int = 1):
    """(log-probability, rank, entropy in bits) at every position of ``ids`` (a stream opening
    with <s>) from the C extension, as ``_ending_at``, ``_score_ids`` and
    ``backoff_token_stats`` give them, on ``threads`` threads (1 or 2); for a model that
    ``compiled_ranking`` says the extension ranks."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    logprob, rank, entropy = np.empty(len(ids)), np.empty(len(ids), dtype=np.int64), np.empty(len(ids))
    with _compiled(model).borrowed() as tables:
        tables.stats(BOS_ID, ids, logprob, rank, entropy, threads)
    return logprob, rank, entropy


def compiled_ranking(model) -> bool:
    """Whether the C extension ranks ``model``'s tokens."""
    return bool(USE_COMPILED and _compiled(model))


class _CompiledTables:
    """A model's compiled tables, one for each thread ranking at once (each holds a cache of
    contexts, kept from call to call: a thread takes one that is free, and gives it back)."""

    def __init__(self, model):
        self.model = model
        self.free = [_make_tables(model)]  # (made here: a model whose arrays it cannot take fails now)
        self.lock = threading.Lock()

    @contextmanager
    def borrowed(self):
        with self.lock:
            tables = self.free.pop() if self.free else None
        if tables is None:
            tables = _make_tables(self.model)
        try:
            yield tables
        finally:
            with self.lock:
                self.free.append(tables)


def _compiled(model):
    """The model's ``_CompiledTables``, made on first use; None where its arrays are of a kind
    the extension does not take (numpy ranks them)."""
    if "compiled" not in model._ranking:
        try:
            model._ranking["compiled"] = _CompiledTables(model)
        except (TypeError, ValueError, KeyError, OverflowError):
            model._ranking["compiled"] = None
    return model._ranking["compiled"]


def _make_tables(model):
    unigrams = unigram_summary(model)
    N = model.order
    keys = [(None, None, None)] + [_keys_spec(model.keys[k]) for k in range(1, N)]
    contexts = [0] + [len(model.keys[j - 1]) for j in range(1, N)]
    return Tables(model.V, keys, [_values_spec(model.logp[k]) for k in range(N)], [_values_spec(model.backoff[k]) for k in range(N)],
                  unigrams.sorted, unigrams.U0, unigrams.U1, contexts, max(POOL_VALUES, model.V))


def _keys_spec(keys):
    if isinstance(keys, PackedKeys):
        return None, np.ascontiguousarray(keys.low, dtype=np.uint32), np.ascontiguousarray(keys.blocks, dtype=np.int64)
    return np.ascontiguousarray(keys, dtype=np.uint64), None, None


def _values_spec(values):
    """(kind, the values or their codes, the table codes point into) as ``_ranking.c`` reads them."""
    if isinstance(values, Zeros):
        return ZERO_KIND, None, None
    if isinstance(values, CodedValues):
        codes = np.ascontiguousarray(values.codes)
        return VALUE_KINDS[codes.dtype], codes, np.ascontiguousarray(values.values, dtype=np.float64)
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    return VALUE_KINDS[values.dtype], np.ascontiguousarray(values), None
