"""``foretell score``'s table, a batch of rows at a time, laid out as bytes by numpy.

The rows are exactly what ``f"{token}\\t{start}\\t{end}\\t{bits:.3f}\\t{rank}\\t{entropy:.3f}\\t{oov}"``
gives (blank offsets for ``</s>``), but formatting 400,000 of them one by one took this process
as long as ranking them took a core. Here every row is a line of a byte matrix, each field in a
slot of its own (the token left-aligned, numbers right-aligned, NUL bytes around them), filled a
column of all rows at a time; the table is that matrix with the NULs taken out. A row numpy
cannot lay out as the f-string would (a token longer than its slot or holding a NUL; a number
not finite, huge, or within a hair of a tie in its fourth decimal) is formatted by Python.

Where the C extension was built at install (``_tsv.c``, optional), it writes the rows of a
UTF-8 table instead, row by row, the same bytes.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Sequence

import numpy as np

from engine.compiled import ALLOWED, tsv
from engine.token_lines import TokenLines

USE_COMPILED = tsv is not None and ALLOWED  # (else numpy lays the rows out)

TOKEN_SLOT = 32  # bytes of the matrix for the token; a longer one's row is formatted by Python
_ASCII_PROBE = "\t\n-.0123456789</s>nainf"


def ascii_compatible(encoding: str) -> bool:
    """Whether ``encoding`` writes digits, tabs and line ends as ASCII (the numbers are laid
    out as ASCII bytes; with another encoding the caller formats rows itself)."""
    try:
        return _ASCII_PROBE.encode(encoding) == _ASCII_PROBE.encode("ascii")
    except LookupError:
        return False


def score_rows(tokens: Sequence[str], starts: np.ndarray, ends: np.ndarray, bits: np.ndarray, rank: np.ndarray,
               entropy: np.ndarray, oov: np.ndarray, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """The table's rows for one batch (each ending in a line end), encoded; ``tokens`` a list
    or TokenLines."""
    if USE_COMPILED and codecs.lookup(encoding).name == "utf-8":
        as_int64 = lambda values: np.ascontiguousarray(values, dtype=np.int64)
        as_float64 = lambda values: np.ascontiguousarray(values, dtype=np.float64)
        text = tokens.text if isinstance(tokens, TokenLines) else "\n".join(tokens).encode(encoding, errors)  # (no token holds a line end)
        return tsv.rows(len(tokens), text, as_int64(starts), as_int64(ends), as_float64(bits),
                        as_int64(rank), as_float64(entropy), np.ascontiguousarray(oov, dtype=bool))
    if isinstance(tokens, TokenLines):
        tokens = list(tokens)
    text = "\n".join(tokens)
    if text.isascii():
        encoded = tokens  # (numpy writes ASCII text as bytes)
    elif codecs.lookup(encoding).name == "utf-8":  # encoded at once: the same bytes, 5 times faster
        encoded = text.encode(encoding, errors).split(b"\n")
    else:
        encoded = [t.encode(encoding, errors) for t in tokens]
    token_lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    odd = token_lengths > TOKEN_SLOT  # (cut short in the matrix, then written by Python)
    if "\0" in text:
        odd |= np.fromiter(("\0" in t for t in tokens), dtype=bool, count=len(tokens))
    bits_digits, odd_bits = _three_decimals(bits)
    entropy_digits, odd_entropy = _three_decimals(entropy)
    odd |= odd_bits | odd_entropy
    slot = max(1, min(TOKEN_SLOT, int(token_lengths.max(initial=0))))
    slots = [
        np.array(encoded, dtype=f"S{slot}").view(np.uint8).reshape(len(tokens), slot),
        _separator(len(tokens), "\t"),
        _integers(starts, blank=starts < 0),
        _separator(len(tokens), "\t"),
        _integers(ends, blank=ends < 0),
        _separator(len(tokens), "\t"),
        bits_digits,
        _separator(len(tokens), "\t"),
        _integers(rank),
        _separator(len(tokens), "\t"),
        entropy_digits,
        _separator(len(tokens), "\t"),
        _integers(oov.astype(np.int64)),
        _separator(len(tokens), "\n"),
    ]
    matrix = np.concatenate(slots, axis=1)
    if not odd.any():
        return matrix[matrix != 0].tobytes()
    matrix[odd] = 0
    kept = matrix != 0
    row_ends = np.cumsum(kept.sum(axis=1))
    table = matrix[kept].tobytes()
    pieces, done = [], 0
    for row in np.flatnonzero(odd).tolist():
        pieces.append(table[done : row_ends[row]])
        done = row_ends[row]
        pieces.append(tsv_row(tokens[row], int(starts[row]), int(ends[row]), float(bits[row]), int(rank[row]), float(entropy[row]), bool(oov[row])).encode(encoding, errors))
    pieces.append(table[done:])
    return b"".join(pieces)


def tsv_row(token: str, start: int, end: int, bits: float, rank: int, entropy: float, oov: bool) -> str:
    """One row as Python writes it (offsets of -1 blank), line end included: what ``score_rows``
    lays out, and what it and an encoding it cannot use fall back to."""
    return f"{token}\t{'' if start < 0 else start}\t{'' if end < 0 else end}\t{bits:.3f}\t{rank}\t{entropy:.3f}\t{int(oov)}\n"


def _separator(rows: int, char: str) -> np.ndarray:
    return np.full((rows, 1), ord(char), dtype=np.uint8)


def _integers(values: np.ndarray, blank: np.ndarray | None = None) -> np.ndarray:
    """Non-negative integers as right-aligned digits, NULs before them; where ``blank``, none."""
    values = np.asarray(values, dtype=np.int64)
    if blank is not None:
        values = np.where(blank, 0, values)
    width = len(str(int(values.max(initial=0))))
    digits = _digits(values, width)
    lengths = 1 + np.searchsorted(_POWERS_OF_TEN, values, side="right")
    if blank is not None:
        lengths[blank] = 0
    digits *= np.arange(width) >= (width - lengths)[:, None]  # (NULs before the number: faster than a masked store)
    return digits


_POWERS_OF_TEN = 10 ** np.arange(1, 19, dtype=np.int64)


@functools.cache
def _four_digits() -> np.ndarray:
    """The numbers 0000 to 9999, each as one 32-bit word of four ASCII digits (made on first
    use, not at every command's start)."""
    return (np.arange(10_000)[:, None] // 10 ** np.arange(3, -1, -1) % 10 + ord("0")).astype(np.uint8).view(np.uint32).ravel()


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as ``width`` ASCII digits each, with leading zeros: four digits at
    a time, each four looked up as one 32-bit word (dividing by a constant is numpy's fast
    path for integer division, and a quarter of the divisions a digit at a time)."""
    groups, table = -(-width // 4), _four_digits()
    words = np.empty((len(values), groups), dtype=np.uint32)
    rest = values
    for group in range(groups - 1, -1, -1):
        rest, four = np.divmod(rest, 10_000)
        words[:, group] = table[four]
    return words.view(np.uint8)[:, 4 * groups - width :]


def _three_decimals(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``f"{v:.3f}"`` of every value, right-aligned with NULs before it, and the values
    three decimals cannot be trusted with (left as NULs, for Python to format)."""
    x = np.asarray(x, dtype=np.float64)
    scaled = np.abs(x) * 1000
    with np.errstate(invalid="ignore"):
        odd = ~(scaled < 1e15) | (np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6)  # not finite, huge, near a tie
    units = np.rint(np.where(odd, 0, scaled)).astype(np.int64)
    whole = _integers(units // 1000)
    # (a column in front for a minus sign; then the whole part, the point, three digits)
    matrix = np.concatenate([np.zeros((len(x), 1), np.uint8), whole, _separator(len(x), "."), _digits(units % 1000, 3)], axis=1)
    negative = np.flatnonzero(np.signbit(x) & ~odd)
    if len(negative):
        first_digit = np.argmax(matrix[negative] != 0, axis=1)
        matrix[negative, first_digit - 1] = ord("-")
    matrix[odd] = 0
    return matrix, odd
