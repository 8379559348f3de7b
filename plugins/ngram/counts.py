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
    last: tuple | None = None  # the n-gram behind that quirk, as word ids (kept to add counts later)


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


CHUNK = 4_000_000  # positions counted at once: memory follows the model, not the corpus


def count_ngrams(ids: np.ndarray, order: int, vocab_size: int, chunk: int | None = None) -> NgramCounts:
    """Raw counts of every n-gram of orders 1..``order`` in ``ids`` (sentences ``<s> ... </s>``,
    possibly a memory-mapped file). Long streams are counted a chunk of whole sentences at a
    time and the counts merged, so the working memory is the model's plus one chunk's."""
    chunk = chunk or CHUNK
    if len(ids) <= chunk:
        return _count_chunk(np.asarray(ids, dtype=np.int64), order, vocab_size)
    return accumulate(vocab_size, order, (_count_chunk(part, order, vocab_size) for part in _sentence_chunks(ids, chunk)))


def accumulate(vocab_size: int, order: int, parts) -> NgramCounts:
    """The counts of several parts (``NgramCounts`` over ids below ``vocab_size``) added up, as
    if one stream held them all: chunks of a long corpus, or a model's counts and documents
    learned later. Merged an order at a time in key space: every table is sorted in the
    lexicographic order of its words, so a part's indices map onto the merged table's in order,
    and each merge is a search and an insertion, not a sort."""
    V = vocab_size
    unigrams = np.zeros(V, dtype=np.int64)
    starts_bos = np.zeros(V, dtype=bool)
    starts_bos[BOS_ID] = True
    merged: list[_Table] | None = None
    last = None
    for part in parts:
        unigrams[: part.vocab_size] += part.orders[0].counts
        tables = _tables_of(part, order, V)
        if merged is None:
            merged = tables
        else:
            place = np.arange(V, dtype=np.int64)  # where the part's (k-1)-grams are in the merged table
            moved = place  # where the merged table's (k-1)-grams went
            for k in range(order - 1):
                merged[k], place, moved = merged[k].merged_with(tables[k], place, moved, V)
        candidate = part.last
        if candidate is not None and (last is None or candidate[::-1] > last[::-1]):
            last = candidate
    orders = [OrderCounts(np.arange(V, dtype=np.uint64), unigrams, None, starts_bos)]
    orders += [OrderCounts(t.keys, t.counts, t.suffix, t.bos) for t in merged or []]
    keys = [o.keys for o in orders]
    last_suffixes = []
    for length in range(1, order):
        tail = np.array([last[len(last) - length :]]) if last is not None else None
        padded = tail is not None and length > 1 and tail[0, 0] == BOS_ID and tail[0, 1] == BOS_ID
        last_suffixes.append(-1 if tail is None or padded else int(index_of(tail, keys, V)[0]))
    return NgramCounts(V, orders, last_suffixes, last)


@dataclass
class _Table:
    """One order's n-grams while parts are merged: global keys (prefix index times V plus last
    word), raw counts, the index of each one's suffix in the order below, and whether it starts
    with <s>."""

    keys: np.ndarray
    counts: np.ndarray
    suffix: np.ndarray
    bos: np.ndarray

    def merged_with(self, part: "_Table", place: np.ndarray, moved: np.ndarray, V: int):
        """This table with ``part`` added, the part's prefixes and suffixes given by ``place``
        (part index -> merged index in the order below) and this table's by ``moved`` (old ->
        new index in the order below). Returns the table, and ``place`` and ``moved`` for this
        order."""
        Vu = np.uint64(V)
        keys = moved[(self.keys // Vu).astype(np.int64)].astype(np.uint64) * Vu + self.keys % Vu
        suffix = moved[self.suffix]
        theirs = place[(part.keys // Vu).astype(np.int64)].astype(np.uint64) * Vu + part.keys % Vu
        at = np.searchsorted(keys, theirs)
        found = at < len(keys)
        found[found] = keys[at[found]] == theirs[found]
        counts = self.counts.copy()
        counts[at[found]] += part.counts[found]  # (no position twice: both tables are unique)
        new = ~found
        old_moved = np.arange(len(keys)) + np.searchsorted(theirs[new], keys)  # new entries before each old one
        new_place = np.empty(len(theirs), dtype=np.int64)
        new_place[found] = old_moved[at[found]]
        new_place[new] = at[new] + np.arange(int(new.sum()))
        where = at[new]
        table = _Table(np.insert(keys, where, theirs[new]), np.insert(counts, where, part.counts[new]),
                       np.insert(suffix, where, place[part.suffix[new]]), np.insert(self.bos, where, part.bos[new]))
        return table, new_place, old_moved


def _tables_of(part: NgramCounts, order: int, V: int) -> list[_Table]:
    """A part's orders 2..``order`` as ``_Table``s, keys over the full vocabulary of ``V`` words.
    A trained model's stored tables have no suffixes: each order's come from its prefixes'
    (the suffix of w1..wk is the suffix of w1..wk-1 followed by wk), one lookup an n-gram."""
    Vp = np.uint64(part.vocab_size)
    tables = []
    suffix_below, bos_below = None, np.arange(part.vocab_size) == BOS_ID
    for k in range(2, order + 1):
        o = part.orders[k - 1]
        prefix = (o.keys // Vp).astype(np.int64)
        word = (o.keys % Vp).astype(np.int64)
        suffix, bos = o.suffix, o.starts_bos
        if suffix is None:
            suffix = word if k == 2 else lookup(part.orders[k - 2].keys, suffix_below[prefix], word, part.vocab_size)
            bos = bos_below[prefix]
        tables.append(_Table(prefix.astype(np.uint64) * np.uint64(V) + word.astype(np.uint64), np.asarray(o.counts, dtype=np.int64),
                             np.asarray(suffix, dtype=np.int64), bos))
        suffix_below, bos_below = tables[-1].suffix, bos
    return tables


def from_tables(vocab_size: int, keys: list[np.ndarray], counts: list[np.ndarray], last) -> NgramCounts:
    """A trained model's stored keys and raw counts as ``NgramCounts`` (for ``accumulate``)."""
    orders = [OrderCounts(k, np.asarray(c, dtype=np.int64), None, None) for k, c in zip(keys, counts)]
    return NgramCounts(vocab_size, orders, [], tuple(last) if last is not None else None)


def _sentence_chunks(ids: np.ndarray, chunk: int):
    start, n = 0, len(ids)
    while start < n:
        cut = min(start + chunk, n)
        while cut < n and ids[cut] != BOS_ID:  # end the chunk where a sentence starts
            ahead = np.flatnonzero(np.asarray(ids[cut : cut + 65536]) == BOS_ID)
            cut = cut + int(ahead[0]) if len(ahead) else min(cut + 65536, n)
        yield np.asarray(ids[start:cut], dtype=np.int64)
        start = cut


def ngram_rows(keys: list[np.ndarray], V: int, k: int) -> np.ndarray:
    """The order-k n-grams as rows of k word ids (from their prefix-keyed form)."""
    V = np.uint64(V)
    rows = keys[0].astype(np.int64)[:, None]
    for j in range(2, k + 1):
        key = keys[j - 1]
        rows = np.hstack([rows[(key // V).astype(np.int64)], (key % V).astype(np.int64)[:, None]])
    return rows.astype(np.int32)


def index_of(rows: np.ndarray, keys: list[np.ndarray], V: int) -> np.ndarray:
    """Index of each row's n-gram in its order's table (-1 where absent)."""
    index = rows[:, 0].astype(np.int64)
    for m in range(1, rows.shape[1]):
        index = lookup(keys[m], index, rows[:, m].astype(np.int64), V)
    return index


def _count_chunk(ids: np.ndarray, order: int, vocab_size: int) -> NgramCounts:
    """``count_ngrams`` for ids that fit in memory at once."""
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
    last_ngram = None
    if last >= 0:
        last_ngram = tuple(int(ids[last - j]) if depth[last] >= j else BOS_ID for j in range(order - 1, -1, -1))
    return NgramCounts(vocab_size, orders, last_suffixes[:-1], last_ngram)


def lookup(keys: np.ndarray, context: np.ndarray, words: np.ndarray, V: int) -> np.ndarray:
    """Index of each (context index, word) n-gram in ``keys``, -1 where absent or context is -1."""
    out = np.full(len(words), -1, dtype=np.int64)
    ok = context >= 0
    if not ok.any() or len(keys) == 0:
        return out
    key = context[ok].astype(np.uint64) * np.uint64(V) + words[ok].astype(np.uint64)
    pos = np.minimum(sorted_search(keys, key), len(keys) - 1)
    found = keys[pos] == key
    sub = np.full(len(key), -1, dtype=np.int64)
    sub[found] = pos[found]
    out[ok] = sub
    return out



def sorted_search(keys: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """``np.searchsorted(keys, needles)``, the needles searched in ascending order: each search
    then starts from the previous answer and reads memory nearby, about three times faster on
    a large model even with the sort paid."""
    if len(needles) < 64:
        return np.searchsorted(keys, needles)
    order = np.argsort(needles)
    found = np.empty(len(needles), dtype=np.intp)
    found[order] = np.searchsorted(keys, needles[order])
    return found
