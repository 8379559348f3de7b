"""The n-gram model on disk in about 10 bytes an n-gram, memory-mapped, and read in place.

Per order k >= 2 (order 1 is the vocabulary: its keys are the word ids):
- keys: ``key = prefix_index * V + last_word`` is sorted, so its high 32 bits change only a few
  hundred times; stored as the low 32 bits (``keysK.low.npy``, uint32) and where each value of
  the high bits starts (``keysK.blocks.npy``). 4 bytes instead of 8, searched as fast.
- log10 probabilities as float32 (``logpK.npy``), exact.
- backoffs through a table: a context's backoff depends only on its counts of counts, so an
  order has a few thousand distinct values; each n-gram stores its value's index (uint8 or
  uint16, ``backoffK.codes.npy``) into ``backoffK.values.npy``. Exact. The top order has none.
- raw counts (only ``learn`` and pruning by counts read them) deflated into ``counts.npz``.

A quantized copy (``foretell models optimize``) stores log10 probabilities and backoffs as 8-bit
indices into 256 values per order: the means of equal-count bins of the sorted values, each value
coded to the nearest mean, a backoff of exactly zero kept as zero (as KenLM's ``build_binary -q 8
-b 8``): about 6 bytes an n-gram.

The classes below stand in for the numpy arrays the model otherwise holds: indexing, slicing,
``np.searchsorted`` and ``np.asarray`` behave the same, so scoring needs no second code path.
"""

from __future__ import annotations

import io
# (zipfile: imported in the functions that use them; foretell's start-up needs none of them)
from pathlib import Path

import numpy as np

from engine.errors import ModelFormatError
from engine.mapped import map_array
from engine.memory import hand_back, release_pages
from plugins.ngram.scratch import ranges

LOW_BITS = np.uint64(32)
LOW_MASK = np.uint64(0xFFFFFFFF)
QUANTIZED_LEVELS = 256


class PackedKeys:
    """A sorted uint64 key array held as its low 32 bits and the start of each high value."""

    dtype = np.dtype(np.uint64)
    ndim = 1

    def __init__(self, low: np.ndarray, blocks: np.ndarray):
        self.low = low  # uint32, ascending within each block
        self.blocks = blocks  # int64: blocks[h] is the first index whose key >> 32 is h; last is len(low)

    @classmethod
    def of(cls, keys: np.ndarray) -> "PackedKeys":
        keys = np.asarray(keys, dtype=np.uint64)
        top = int(keys[-1] >> LOW_BITS) + 1 if len(keys) else 0
        blocks = np.searchsorted(keys >> LOW_BITS, np.arange(top + 1, dtype=np.uint64)).astype(np.int64)
        blocks[-1] = len(keys)
        return cls((keys & LOW_MASK).astype(np.uint32), blocks)

    def __len__(self) -> int:
        return len(self.low)

    @property
    def shape(self) -> tuple[int]:
        return (len(self.low),)

    def _high(self, positions: np.ndarray) -> np.ndarray:
        return (np.searchsorted(self.blocks, positions, side="right") - 1).astype(np.uint64)

    def __getitem__(self, index):
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        elif isinstance(index, np.ndarray) and index.dtype == bool:
            index = np.flatnonzero(index)
        positions = np.asarray(index)
        key = (self._high(positions) << LOW_BITS) | self.low[positions].astype(np.uint64)
        return key if key.ndim else np.uint64(key)

    def __array__(self, dtype=None, copy=None):
        high = np.repeat(np.arange(len(self.blocks) - 1, dtype=np.uint64), np.diff(self.blocks))
        keys = (high << LOW_BITS) | self.low.astype(np.uint64)
        return keys if dtype is None else keys.astype(dtype)

    def searchsorted(self, needles, side="left", sorter=None):
        """``np.searchsorted`` on the full keys: each needle is searched within the block of
        its high bits (needles in ascending order group into few blocks)."""
        scalar = np.ndim(needles) == 0
        needles = np.atleast_1d(np.asarray(needles, dtype=np.uint64))
        if len(needles) == 0:
            return np.zeros(0, dtype=np.intp)
        high = (needles >> LOW_BITS).astype(np.int64)
        low = (needles & LOW_MASK).astype(np.uint32)
        order = None if len(high) < 2 or bool(np.all(high[1:] >= high[:-1])) else np.argsort(high, kind="stable")
        if order is not None:
            high, low = high[order], low[order]
        found = np.empty(len(needles), dtype=np.intp)
        last_block = len(self.blocks) - 1
        bounds = np.concatenate(([0], np.flatnonzero(high[1:] != high[:-1]) + 1, [len(high)]))
        for a, b in zip(bounds[:-1], bounds[1:]):
            h = int(high[a])
            if h >= last_block:
                found[a:b] = len(self.low)
                continue
            start, end = int(self.blocks[h]), int(self.blocks[h + 1])
            found[a:b] = start + np.searchsorted(self.low[start:end], low[a:b], side=side)
        if order is not None:
            unsorted = np.empty_like(found)
            unsorted[order] = found
            found = unsorted
        return found[0] if scalar else found

    def matches(self, needles: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """``positions`` (where ``searchsorted`` put each needle) where the key there is the
        needle, else -1: compared on the low bits within the needle's block, no key rebuilt."""
        high = (needles >> LOW_BITS).astype(np.int64)
        block_end = self.blocks[np.minimum(high + 1, len(self.blocks) - 1)]  # (past the last block: the end, where it was put)
        at = np.minimum(positions, max(len(self.low) - 1, 0))
        found = (positions < block_end) & (self.low[at] == (needles & LOW_MASK).astype(np.uint32))
        return np.where(found, positions, -1)

    def problem(self) -> str | None:
        """What is wrong with arrays read from disk, if anything (checked once, on load)."""
        blocks, low = self.blocks, self.low
        if blocks.ndim != 1 or len(blocks) == 0 or blocks[0] != 0 or blocks[-1] != len(low) or bool(np.any(np.diff(blocks) < 0)):
            return "the key blocks do not cover the keys in order"
        rising = np.ones(len(low), dtype=bool)
        rising[1:] = low[1:] > low[:-1]
        rising[blocks[:-1][blocks[:-1] < len(low)]] = True  # a block starts afresh
        if not bool(rising.all()):
            return "the keys are not sorted"
        return None


class CodedValues:
    """float32 values held as small integer codes into a table of distinct values."""

    dtype = np.dtype(np.float32)
    ndim = 1

    def __init__(self, codes: np.ndarray, values: np.ndarray):
        self.codes = codes
        self.values = values

    @classmethod
    def quantized(cls, values: np.ndarray, levels: int = QUANTIZED_LEVELS, exact_zero: bool = False) -> "CodedValues":
        """Equal-count bins of the sorted values, each the mean of its members. With
        ``exact_zero``, code 0 is 0.0 itself (as KenLM keeps it for backoffs): a context with no
        continuations backs off with weight 1, and a bin's mean would move every word after it."""
        values = np.asarray(values, dtype=np.float64)
        codes = np.zeros(len(values), dtype=np.uint8)
        binned = np.flatnonzero(values != 0) if exact_zero else np.arange(len(values))
        first = int(exact_zero)
        order = binned[np.argsort(values[binned], kind="stable")]
        bins = np.minimum(np.arange(len(order)) * (levels - first) // max(len(order), 1), levels - first - 1) + first
        codes[order] = bins
        sums = np.bincount(bins, weights=values[order], minlength=levels)
        sizes = np.bincount(bins, minlength=levels)
        table = np.divide(sums, sizes, out=np.zeros(levels), where=sizes > 0)
        for empty in np.flatnonzero(sizes[first:] == 0) + first:  # (fewer distinct values than bins)
            table[empty] = table[empty - 1] if empty > first else table[first:][sizes[first:] > 0][0]
        table = table.astype(np.float32)
        # Each value to the nearest mean, as KenLM encodes (not always its own bin's mean).
        centers = table[first:].astype(np.float64)
        above = np.clip(np.searchsorted(centers, values[binned]), 1, len(centers) - 1)
        nearer_below = values[binned] - centers[above - 1] < centers[above] - values[binned]
        codes[binned] = (above - nearer_below + first).astype(np.uint8)
        return cls(codes, table)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def shape(self) -> tuple[int]:
        return (len(self.codes),)

    def __getitem__(self, index):
        return self.values[self.codes[index]]

    def __array__(self, dtype=None, copy=None):
        out = self.values[self.codes]
        return out if dtype is None else out.astype(dtype)

    def astype(self, dtype):
        return np.asarray(self, dtype=dtype)

    def problem(self) -> str | None:
        if len(self.codes) and int(self.codes.max()) >= len(self.values):
            return "a value code points past its table"
        return None


class Zeros(CodedValues):
    """The top order's backoffs: all zero, stored as nothing."""

    def __init__(self, n: int):
        super().__init__(np.broadcast_to(np.uint8(0), (n,)), np.zeros(1, dtype=np.float32))


def _code_type(distinct: int):
    return np.uint8 if distinct <= 1 << 8 else np.uint16 if distinct <= 1 << 16 else np.uint32


# -- files ---------------------------------------------------------------------------------
def is_packed(folder: Path) -> bool:
    return (folder / "logp1.npy").exists() and not (folder / "keys1.npy").exists()


SAVE_BLOCK = 1 << 20  # n-grams written at once: a model is saved in blocks, whatever its size


def save(folder: Path, keys, logp, backoff, counts) -> None:
    """Write a model's tables (and its counts, if any) in the packed layout, a block at a time
    (a freshly trained model's tables are mapped files: they are not read whole); log10
    probabilities already coded (an 8-bit copy's) stay coded."""
    order = len(keys)
    _save_blocks(folder / "logp1.npy", logp[0], np.float32)
    _save_blocks(folder / "backoff1.npy", backoff[0], np.float32)
    for k in range(2, order + 1):
        if isinstance(keys[k - 1], PackedKeys):
            np.save(folder / f"keys{k}.low.npy", keys[k - 1].low, allow_pickle=False)
            np.save(folder / f"keys{k}.blocks.npy", keys[k - 1].blocks, allow_pickle=False)
        else:
            _save_blocks(folder / f"keys{k}.low.npy", keys[k - 1], np.uint32, lambda block: block & LOW_MASK)
            np.save(folder / f"keys{k}.blocks.npy", _key_blocks(keys[k - 1]), allow_pickle=False)
        if isinstance(logp[k - 1], CodedValues):
            _save_coded(folder, f"logp{k}", logp[k - 1])
        else:
            _save_blocks(folder / f"logp{k}.npy", logp[k - 1], np.float32)
        if k < order and isinstance(backoff[k - 1], CodedValues):
            _save_coded(folder, f"backoff{k}", backoff[k - 1])
        elif k < order:  # exact codes: the order's distinct values, then each n-gram's index among them
            values = backoff[k - 1]
            table = np.unique(np.concatenate([np.zeros(0, np.float32)] + [_distinct(values, a, b) for a, b in ranges(len(values), SAVE_BLOCK)]))
            np.save(folder / f"backoff{k}.values.npy", table, allow_pickle=False)
            code = _code_type(len(table))
            _save_blocks(folder / f"backoff{k}.codes.npy", values, code, lambda block: np.searchsorted(table, block.astype(np.float32)))
        release_pages(keys[k - 1], logp[k - 1], backoff[k - 1])  # (what the searches for the key blocks touched)
    if counts is not None:
        _save_counts(folder / "counts.npz", [np.asarray(c, dtype=np.uint32) for c in counts])


def _distinct(values, start: int, stop: int) -> np.ndarray:
    distinct = np.unique(np.asarray(values[start:stop], dtype=np.float32))
    release_pages(values)
    return distinct


def _save_blocks(path: Path, values, dtype, convert=lambda block: block) -> None:
    """``np.save(path, convert(values).astype(dtype))``, a block at a time."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (len(values),)})
        for start, stop in ranges(len(values), SAVE_BLOCK):
            np.asarray(convert(np.asarray(values[start:stop])), dtype=dtype).tofile(f)
            hand_back(values)


def _key_blocks(keys) -> np.ndarray:
    """``PackedKeys.of(keys).blocks``: where each value of the keys' high 32 bits starts."""
    top = int(keys[len(keys) - 1] >> LOW_BITS) + 1 if len(keys) else 0
    blocks = np.searchsorted(keys, np.arange(top + 1, dtype=np.uint64) << LOW_BITS).astype(np.int64)
    blocks[-1] = len(keys)
    return blocks


def _save_coded(folder: Path, stem: str, coded: CodedValues) -> None:
    np.save(folder / f"{stem}.codes.npy", np.ascontiguousarray(coded.codes), allow_pickle=False)
    np.save(folder / f"{stem}.values.npy", coded.values, allow_pickle=False)


def _save_counts(path: Path, counts: list[np.ndarray]) -> None:
    """Counts deflated at the fastest level (mostly ones and twos: about half a byte each)."""
    import zipfile
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for k, c in enumerate(counts, start=1):
            with archive.open(f"counts{k}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, c, allow_pickle=False)  # (16 MB at a time)
            release_pages(c)


def load(folder: Path, order: int, V: int):
    """(keys, logp, backoff, counts loader) of a packed folder; ModelFormatError when a file is
    missing, corrupt or inconsistent with the rest."""
    keys = [np.arange(V, dtype=np.uint64)]
    logp = [load_array(folder, "logp1.npy", np.float32)]
    backoff = [load_array(folder, "backoff1.npy", np.float32)]
    for k in range(2, order + 1):
        keys.append(PackedKeys(load_array(folder, f"keys{k}.low.npy", np.uint32), load_array(folder, f"keys{k}.blocks.npy", np.int64)))
        if (folder / f"logp{k}.npy").exists():
            logp.append(load_array(folder, f"logp{k}.npy", np.float32))
        else:
            logp.append(_coded(folder, f"logp{k}"))
        backoff.append(_coded(folder, f"backoff{k}") if k < order else Zeros(len(keys[-1])))
    if (folder / f"keys{order + 1}.low.npy").exists():
        raise ModelFormatError(f"{folder.name}: the manifest says order {order} but the model has n-grams of order {order + 1}")
    counts_path = folder / "counts.npz"
    counts = LazyCounts(lambda: _load_counts(folder, counts_path, order, [len(k) for k in keys])) if counts_path.exists() else None
    return keys, logp, backoff, counts


class LazyCounts:
    """The raw counts, read from counts.npz the first time something asks for them (learning,
    pruning by counts): a query never pays for them."""

    def __init__(self, loader):
        self._loader = loader
        self._counts: list[np.ndarray] | None = None

    def _all(self) -> list[np.ndarray]:
        if self._counts is None:
            self._counts = self._loader()
        return self._counts

    def __getitem__(self, k: int) -> np.ndarray:
        return self._all()[k]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self):
        return iter(self._all())


def load_array(folder: Path, name: str, dtype) -> np.ndarray:
    """One 1-D array of ``dtype`` from ``folder``, memory-mapped, or a ModelFormatError that
    names the file."""
    path = folder / name
    try:
        a = map_array(path)
    except FileNotFoundError:
        raise ModelFormatError(f"{folder.name}: {name} is missing") from None
    except (ValueError, OSError, EOFError) as exc:
        raise ModelFormatError(f"{folder.name}: {name} is corrupt or not a numpy array ({exc})") from None
    if a.dtype != dtype or a.ndim != 1:
        raise ModelFormatError(f"{folder.name}: {name} has the wrong type ({a.dtype}, {a.ndim}-D)")
    return a


def _coded(folder: Path, stem: str) -> CodedValues:
    codes = _array_of_codes(folder, f"{stem}.codes.npy")
    return CodedValues(codes, load_array(folder, f"{stem}.values.npy", np.float32))


def _array_of_codes(folder: Path, name: str) -> np.ndarray:
    for dtype in (np.uint8, np.uint16, np.uint32):
        try:
            return load_array(folder, name, dtype)
        except ModelFormatError as exc:
            if "wrong type" not in str(exc):
                raise
    raise ModelFormatError(f"{folder.name}: {name} is not an array of codes")


def _load_counts(folder: Path, path: Path, order: int, lengths: list[int]) -> list[np.ndarray]:
    import zipfile
    counts = []
    try:
        with zipfile.ZipFile(path) as archive:
            for k, n in enumerate(lengths, start=1):
                with archive.open(f"counts{k}.npy") as f:
                    stream = io.BufferedReader(f)
                    version = np.lib.format.read_magic(stream)
                    if version not in ((1, 0), (2, 0)):
                        raise ValueError(f"numpy format version {version}")
                    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = header(stream)
                    if dtype != np.uint32 or shape != (n,):  # checked before anything that size is made
                        raise ModelFormatError(f"{folder.name}: the counts of order {k} do not match its n-grams")
                    counts.append(np.frombuffer(stream.read(4 * n), dtype=np.uint32))
                    if len(counts[-1]) != n:
                        raise ModelFormatError(f"{folder.name}: counts.npz is cut short")
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFormatError(f"{folder.name}: counts.npz is corrupt ({exc})") from None
    return counts
