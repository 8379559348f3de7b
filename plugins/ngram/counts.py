"""Counting n-grams of an id stream into sorted integer keys, no Python tuples.

An n-gram of order k is stored as ``key = index_of_its_prefix_in_order_k-1 * V + last_word``
(order 1: the word id itself), so each order is one sorted ``uint64`` array, the children of a
context are one contiguous run, and lookups are ``np.searchsorted``. Following KenLM there is one
``<s>`` per sentence: no n-gram reaches back past it.
"""

from __future__ import annotations

# (shutil, tempfile: imported in the functions that use them; foretell's start-up needs none of them)
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.memory import hand_back, release_freed_memory, release_pages
from engine.model import sentence_starts
from engine.parallel import map_on_two_threads, ordered_map
from engine.vocab import BOS_ID
from plugins.ngram.copies import Copies, counting_jobs
from plugins.ngram.scratch import Scratch, ranges
from plugins.ngram.search import lookup, unique_inverse


@dataclass
class OrderCounts:
    keys: np.ndarray  # uint64, sorted; order 1: arange(V)
    counts: np.ndarray  # int64, raw occurrences
    suffix: np.ndarray | None  # int64 index in order k-1 of the n-gram without its first word
    starts_bos: np.ndarray | None  # bool, the n-gram begins with <s> (None with no suffixes: see _count_chunk)


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


CHUNK = 2_000_000  # positions counted at once, at most
MERGE_BLOCK = 1 << 20  # n-grams read from all runs together, a merge step, at most
COUNTING_BYTES = 400  # working memory a position of a chunk takes, both chunks counted at once together
MERGE_BYTES = 192  # and an n-gram of a merge step (its keys, counts, sort and where it went)
SUFFIX_BYTES = 192  # and an n-gram whose suffix is looked up


def count_ngrams(ids: np.ndarray, order: int, vocab_size: int, chunk: int | None = None, spill: Path | None = None,
                 scratch: Scratch | None = None) -> NgramCounts:
    """Raw counts of every n-gram of orders 1..``order`` in ``ids`` (sentences ``<s> ... </s>``,
    possibly a memory-mapped file). A long stream is counted a chunk of whole sentences at a
    time, each chunk's sorted tables written to a temporary folder (in ``spill``, else the
    scratch's) as a run, and the runs merged an order at a time, a block of each at once, into
    ``scratch``'s arrays (files when large): the working memory follows the scratch's budget,
    and the time grows with the text, not with chunks times model."""
    import tempfile
    scratch = scratch or Scratch.in_memory()
    chunk = chunk or min(CHUNK, scratch.block(COUNTING_BYTES))
    if len(ids) <= chunk:
        return _count_chunk(np.asarray(ids, dtype=np.int64), order, vocab_size)
    hand_back(ids)  # (what reading the text freed, and the pages of the text read so far)
    with tempfile.TemporaryDirectory(prefix="counts-", dir=spill or scratch.folder) as folder:
        pieces = _sentence_chunks(ids, chunk)
        if len(ids) < 1 << 32:  # (a run keeps its counts in 32 bits: a sentence's copies stay below that)
            pieces = counting_jobs(ids, pieces, chunk, scratch.budget)
        jobs = ((Path(folder) / str(n), piece) for n, piece in enumerate(pieces))
        runs = list(ordered_map(_counted_run, jobs, (ids, order, vocab_size)))  # two chunks at once on two cores
        release_pages(ids)  # (where chunks were cut)
        return _merge_runs(runs, order, vocab_size, scratch)


def _counted_run(shared, job) -> "_Run":
    ids, order, vocab_size = shared
    folder, piece = job
    if isinstance(piece, Copies):  # sentences of a window that repeats some, each with its copies
        chunk, weights = ids[piece.positions()], np.repeat(piece.weights, piece.lengths)
    else:
        chunk, weights = ids[piece[0] : piece[1]], None
    run = _Run.write(folder, _count_chunk(np.asarray(chunk, dtype=np.int64), order, vocab_size, suffixes=False, weights=weights))
    hand_back(ids)
    return run


class _Run:
    """One chunk's counts on disk: per order above 1 its keys and counts, and once merged, where
    each of its n-grams went in the merged table (``places``), as raw arrays read back a slice at
    a time (not mapped, so what was merged does not stay resident)."""

    def __init__(self, folder: Path, sizes: list[int], last):
        self.folder, self.sizes, self.last = folder, sizes, last

    @classmethod
    def write(cls, folder: Path, part: NgramCounts) -> "_Run":
        folder.mkdir()
        part.orders[0].counts.tofile(folder / "counts1")  # (on disk too: a run in memory is a few numbers, whatever the vocabulary)
        for k, o in enumerate(part.orders[1:], start=2):
            np.asarray(o.keys, dtype=np.uint64).tofile(folder / f"keys{k}")
            np.asarray(o.counts, dtype=np.uint32).tofile(folder / f"counts{k}")  # (a chunk's counts fit)
        return cls(folder, [len(o.keys) for o in part.orders], part.last)

    def read(self, field: str, k: int, start: int, stop: int) -> np.ndarray:
        """Items ``start:stop`` of a table, read straight into an array (a merge of hundreds of
        runs reads a few thousand items at a time, tens of thousands of times: ``np.fromfile``
        spent 30 microseconds a read, three times this)."""
        dtype = np.dtype({"keys": np.uint64, "counts": np.uint32 if k > 1 else np.int64, "places": np.int64}[field])
        out = np.empty(max(stop - start, 0), dtype=dtype)
        into, done = memoryview(out).cast("B"), 0
        with open(self.folder / f"{field}{k}", "rb", buffering=0) as f:
            f.seek(start * dtype.itemsize)
            while done < len(into) and (got := f.readinto(into[done:])):
                done += got
        out = out[: done // dtype.itemsize]  # (fewer past the end, as np.fromfile)
        return out.astype(np.int64) if field == "counts" and dtype != np.int64 else out

    def keys_in_merged_space(self, k: int, start: int, stop: int, V: int) -> np.ndarray:
        """Keys ``start:stop`` of order ``k``, their prefixes replaced by the merged table's
        indices (the prefixes are sorted, so one slice of the places file holds them)."""
        keys = self.read("keys", k, start, stop)
        if k == 2 or len(keys) == 0:  # (order 1's indices are the word ids everywhere)
            return keys
        Vu = np.uint64(V)
        prefix = (keys // Vu).astype(np.int64)
        places = self.read("places", k - 1, int(prefix[0]), int(prefix[-1]) + 1)
        return places[prefix - prefix[0]].astype(np.uint64) * Vu + keys % Vu


FAN_IN = 64  # runs merged at once, at most: more are first merged in groups into longer runs


def _merge_runs(runs: list[_Run], order: int, V: int, scratch: Scratch) -> NgramCounts:
    """The runs' counts added up, as if one stream held them all, into ``scratch``'s arrays
    (see ``_merged_blocks``). Past ``FAN_IN`` runs, groups of them are first merged into
    longer runs, so a merge's blocks (one per run) stay within the budget however long the
    text: lmplz's way too."""
    block = min(MERGE_BLOCK, scratch.block(MERGE_BYTES))
    while len(runs) > FAN_IN:  # (groups are independent: two at once on two cores, each with half the block)
        groups = [runs[i : i + FAN_IN] for i in range(0, len(runs), FAN_IN)]
        runs = list(ordered_map(_merged_group, groups, (order, V, block // 2)))
    orders = [OrderCounts(np.arange(V, dtype=np.uint64), _unigrams(runs, V), None, np.arange(V) == BOS_ID)]
    for k in range(2, order + 1):
        merged_keys, merged_counts = scratch.writer(np.uint64, f"keys{k}"), scratch.writer(np.uint32, f"counts{k}")
        for keys, counts in _merged_blocks(runs, k, order, V, block):
            merged_keys.add(keys)
            merged_counts.add(counts)
        orders.append(_with_suffixes(merged_keys.finish(), merged_counts.finish(), orders[-1], k, V, scratch))
        release_freed_memory()
    return _with_last(V, order, orders, _last_of(runs))


def _merged_group(shared, group: list[_Run]) -> _Run:
    order, V, block = shared
    return _merged_into_run(group, order, V, block)


def _merged_into_run(runs: list[_Run], order: int, V: int, block: int) -> _Run:
    """One run holding the counts of ``runs`` (whose folders are then removed)."""
    import shutil
    folder = runs[0].folder.with_name(runs[0].folder.name + "+")
    folder.mkdir()
    _unigrams(runs, V).tofile(folder / "counts1")
    sizes = [V]
    for k in range(2, order + 1):
        with open(folder / f"keys{k}", "wb") as keys_file, open(folder / f"counts{k}", "wb") as counts_file:
            sizes.append(0)
            for keys, counts in _merged_blocks(runs, k, order, V, block):
                keys.tofile(keys_file)
                counts.astype(np.uint32).tofile(counts_file)
                sizes[-1] += len(keys)
    for run in runs:
        shutil.rmtree(run.folder)
    return _Run(folder, sizes, _last_of(runs))


def _unigrams(runs: list[_Run], V: int) -> np.ndarray:
    unigrams = np.zeros(V, dtype=np.int64)
    for run in runs:
        unigrams[: run.sizes[0]] += run.read("counts", 1, 0, run.sizes[0])
    return unigrams


def _last_of(runs: list[_Run]):
    """lmplz's last N-gram among the runs' (see ``last_in_lmplz_order``)."""
    last = None
    for run in runs:
        if run.last is not None and (last is None or run.last[::-1] > last[::-1]):
            last = run.last
    return last


def _merged_blocks(runs: list[_Run], k: int, order: int, V: int, block: int):
    """Order ``k`` of the runs added up: (keys, counts) a block at a time, in order. Each run's
    tables are sorted in the lexicographic order of their words, so once a run's (k-1)-grams
    are placed in the merged table (increasing places), its k-gram keys translate to merged
    keys still in order, and an order is a k-way merge: a block of every run, cut at the
    smallest last key among runs with more to read, united, and where the block's n-grams went
    appended to each run's places (read by the order above). Every run is topped up once its
    block is half used, so the runs' blocks stay abreast and a step takes about half a block of
    each (refilling only the emptied run made a step of one run's block: steps grew with runs
    squared, 300 s for 383 runs)."""
    block = max(1 << 12, block // len(runs))
    sizes = [run.sizes[k - 1] for run in runs]
    read = [0] * len(runs)
    pending = [(np.zeros(0, np.uint64), np.zeros(0, np.int64))] * len(runs)
    places = _Places([run.folder / f"places{k}" for run in runs], block * len(runs)) if k < order else None
    merged = 0
    while True:
        for r, run in enumerate(runs):  # top up every run whose block is half used
            if len(pending[r][0]) < block // 2 and read[r] < sizes[r]:
                stop = min(read[r] + block, sizes[r])
                keys, counts = run.keys_in_merged_space(k, read[r], stop, V), run.read("counts", k, read[r], stop)
                pending[r] = (np.concatenate((pending[r][0], keys)), np.concatenate((pending[r][1], counts)))
                read[r] = stop
        live = [r for r in range(len(runs)) if len(pending[r][0])]
        if not live:
            break
        more = [pending[r][0][-1] for r in live if read[r] < sizes[r]]
        taken = []
        for r in live:
            keys, counts = pending[r]
            n = int(np.searchsorted(keys, min(more), side="right")) if more else len(keys)
            taken.append((r, keys[:n], counts[:n]))
            pending[r] = (keys[n:], counts[n:])
        unique, inverse, _ = unique_inverse(np.concatenate([t[1] for t in taken]))
        counts = np.bincount(inverse, weights=np.concatenate([t[2] for t in taken]), minlength=len(unique))
        if places:
            at = 0
            for r, keys, _ in taken:
                places.add(r, merged + inverse[at : at + len(keys)])
                at += len(keys)
        merged += len(unique)
        yield unique, counts.astype(np.int64)
    if places:
        places.flush()


class _Places:
    """Where each run's n-grams went in the merged table, appended to a file per run: held
    until a merge block's worth waits, then written, each file opened for that alone (a merge
    step takes a little from every run: writing each piece at once was most of a merge of a
    hundred runs, and thousands of open files would pass the system's limit)."""

    def __init__(self, paths: list[Path], limit: int):
        self.paths, self.limit = paths, limit
        self.waiting: list[list[np.ndarray]] = [[] for _ in paths]
        self.held = 0

    def add(self, run: int, places: np.ndarray) -> None:
        self.waiting[run].append(places.astype(np.int64))
        self.held += len(places)
        if self.held >= self.limit:
            self.flush()

    def flush(self) -> None:
        for path, pieces in zip(self.paths, self.waiting):
            if pieces:
                with open(path, "ab") as f:
                    np.concatenate(pieces).tofile(f)
                pieces.clear()
        self.held = 0


def _with_suffixes(keys: np.ndarray, counts: np.ndarray, below: OrderCounts, k: int, V: int, scratch: Scratch | None = None) -> OrderCounts:
    """Order ``k``'s table with each n-gram's suffix (the suffix of w1..wk is the suffix of
    w1..wk-1 followed by wk: one search in the order below) and whether it starts with <s>,
    a block at a time into ``scratch``'s arrays."""
    scratch = scratch or Scratch.in_memory()
    Vu = np.uint64(V)
    suffixes, starts_bos = scratch.writer(np.int64, f"suffix{k}"), scratch.writer(bool, f"bos{k}")
    for start, stop in ranges(len(keys), scratch.block(SUFFIX_BYTES)):
        block = np.asarray(keys[start:stop])
        prefix = (block // Vu).astype(np.int64)
        word = (block % Vu).astype(np.int64)
        if k == 2:
            suffix = word
        else:  # (millions of searches: half on each core)
            halves = [slice(0, len(block) // 2), slice(len(block) // 2, len(block))]
            suffix = np.concatenate(map_on_two_threads(lambda half: lookup(below.keys, below.suffix[prefix[half]], word[half], V), halves))
        suffixes.add(suffix)
        starts_bos.add(below.starts_bos[prefix])
        hand_back(keys, below.keys, below.suffix, below.starts_bos)
    return OrderCounts(keys, counts, suffixes.finish(), starts_bos.finish())


def accumulate(vocab_size: int, order: int, parts) -> NgramCounts:
    """The counts of several parts (``NgramCounts`` over ids below ``vocab_size``) added up, as
    if one stream held them all: a model's counts and the documents it learns later (a few
    parts, one large; a long corpus's many chunks go through ``_merge_runs``). Merged an order
    at a time in key space: every table is sorted in the lexicographic order of its words, so a
    part's indices map onto the merged table's in order, and each merge is a search and an
    insertion, not a sort."""
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
    return _with_last(V, order, orders, last)


def _with_last(V: int, order: int, orders: list[OrderCounts], last) -> NgramCounts:
    """The merged orders with lmplz's last N-gram (see ``last_in_lmplz_order``) and the index
    of each of its suffixes."""
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
    below = OrderCounts(part.orders[0].keys, part.orders[0].counts, None, np.arange(part.vocab_size) == BOS_ID)
    for k in range(2, order + 1):
        o = part.orders[k - 1]
        if o.suffix is None:
            o = _with_suffixes(o.keys, o.counts, below, k, part.vocab_size)
        keys = (o.keys // Vp) * np.uint64(V) + o.keys % Vp
        tables.append(_Table(keys, np.asarray(o.counts, dtype=np.int64), np.asarray(o.suffix, dtype=np.int64), o.starts_bos))
        below = o
    return tables


def from_tables(vocab_size: int, keys: list[np.ndarray], counts: list[np.ndarray], last) -> NgramCounts:
    """A trained model's stored keys and raw counts as ``NgramCounts`` (for ``accumulate``)."""
    orders = [OrderCounts(k, np.asarray(c, dtype=np.int64), None, None) for k, c in zip(keys, counts)]
    return NgramCounts(vocab_size, orders, [], tuple(last) if last is not None else None)


def _sentence_chunks(ids: np.ndarray, chunk: int):
    """(start, stop) of pieces of about ``chunk`` positions that end where a sentence does."""
    start, n = 0, len(ids)
    while start < n:
        cut, window = min(start + chunk, n), 256
        while cut < n and ids[cut] != BOS_ID:  # end the chunk where a sentence starts
            # (a look a little further each time: reading 256 KB at each of 383 cuts kept 96 MB
            # of a mapped corpus resident)
            ahead = np.flatnonzero(np.asarray(ids[cut : cut + window]) == BOS_ID)
            cut = cut + int(ahead[0]) if len(ahead) else min(cut + window, n)
            window = min(2 * window, 65536)
        yield start, cut
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


def _count_chunk(ids: np.ndarray, order: int, vocab_size: int, suffixes: bool = True, weights: np.ndarray | None = None) -> NgramCounts:
    """``count_ngrams`` for ids that fit in memory at once (without ``suffixes``: no suffixes or
    <s> flags above order 1, which a run on disk does not keep; the merge finds them), each
    position counted ``weights`` times where given (the copies of its sentence)."""
    n = len(ids)
    depth = np.arange(n) - sentence_starts(ids)  # 0 at <s>, 1 at the first word, ...
    V = np.uint64(vocab_size)
    unigram_counts = np.bincount(ids, weights=weights, minlength=vocab_size).astype(np.int64)
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
        unique, inverse, counts = unique_inverse(keys)
        if weights is not None:
            counts = np.bincount(inverse, weights=weights[pos], minlength=len(unique))
        suffix = bos = None
        if suffixes:
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
