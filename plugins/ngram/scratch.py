"""Where a training's model-sized arrays live, so that its memory follows a budget (``--memory``),
not the corpus or the model: like lmplz's ``-S``.

Arrays stay in memory, where they are fastest, until together they would take more than a
quarter of the budget (every array of a small corpus stays there); past that each is a file
in a temporary folder, mapped, and worked on a block at a time; after each block the pages it
touched are handed back (``engine.memory.release_pages``), so what stays resident is about a block's worth.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

DEFAULT_MEMORY = "1G"
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
FLOOR = 16 << 20  # the least budget accepted: below it blocks get too small to be worth a call


def parse_memory(text: str) -> int:
    """Bytes of a budget written as ``512M``, ``2G``, ``1.5G`` or a number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"memory must be a size such as 512M or 2G, not {text!r}")
    size = int(float(match.group(1)) * UNITS[match.group(2).upper()])
    if size < FLOOR:
        raise ValueError(f"memory must be at least {FLOOR >> 20}M, not {text!r}")
    return size


class Scratch:
    """Arrays for one training, in ``folder`` when large (``None``: always in memory)."""

    def __init__(self, folder: Path | None, budget: int):
        self.folder, self.budget = folder, budget
        self._names = 0
        self._held = 0  # bytes of the arrays it has made in memory (most live to the end)

    @classmethod
    def in_memory(cls) -> "Scratch":
        return cls(None, 1 << 62)

    def block(self, bytes_per_item: int) -> int:
        """Items a block may hold when each takes ``bytes_per_item`` of working memory (its own
        arrays and the temporaries made from them): the three quarters of the budget the arrays
        held in memory leave (blocks of the whole budget took a training on 16 million tokens at
        --memory 64M to 150 MB, three quarters to 128)."""
        return max(1 << 12, (self.budget - self.budget // 4) // bytes_per_item)

    def _on_disk(self, nbytes: int) -> bool:
        """Whether an array of ``nbytes`` goes to a file: when the arrays held in memory would
        come to more than a quarter of the budget with it (the rest is for blocks)."""
        if self.folder is not None and self._held + nbytes > self.budget // 4:
            return True
        self._held += nbytes
        return False

    def _path(self, stem: str) -> Path:
        self._names += 1
        return self.folder / f"{stem}-{self._names}"

    def zeros(self, n: int, dtype, stem: str = "array") -> np.ndarray:
        """A zero-filled array of ``n`` items (a new file is all zeros)."""
        dtype = np.dtype(dtype)
        if not self._on_disk(n * dtype.itemsize) or n == 0:
            return np.zeros(n, dtype=dtype)
        path = self._path(stem)
        with open(path, "wb") as f:
            f.truncate(n * dtype.itemsize)
        return np.memmap(path, dtype=dtype, mode="r+", shape=(n,))

    def writer(self, dtype, stem: str = "array") -> "Appender":
        return Appender(self, np.dtype(dtype), stem)


class Appender:
    """An array written a block at a time (its size unknown until the end): in a file, read
    back mapped when large, or in memory when small."""

    def __init__(self, scratch: Scratch, dtype: np.dtype, stem: str):
        self.dtype, self.n = dtype, 0
        self.path = scratch._path(stem) if scratch.folder is not None else None
        self._file = open(self.path, "wb") if self.path else None
        self._pieces: list[np.ndarray] = []
        self._scratch = scratch

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=self.dtype)
        self.n += len(values)
        if self._file:
            values.tofile(self._file)
        else:
            self._pieces.append(values)

    def finish(self) -> np.ndarray:
        if not self._file:
            return np.concatenate(self._pieces) if self._pieces else np.zeros(0, self.dtype)
        self._file.close()
        if self.n == 0:
            return np.zeros(0, self.dtype)
        if self._scratch._on_disk(self.n * self.dtype.itemsize):
            return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.n,))
        values = np.fromfile(self.path, dtype=self.dtype)
        self.path.unlink()
        return values


def ranges(n: int, block: int):
    """(start, stop) of consecutive blocks covering ``range(n)``."""
    for start in range(0, n, block):
        yield start, min(start + block, n)
