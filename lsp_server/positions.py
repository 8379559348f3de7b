"""Character offsets to LSP positions (line and column in the negotiated encoding)."""

from __future__ import annotations

import re

import numpy as np
from lsprotocol import types

_OTHER_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # line breaks for pygls besides \n


def offset_at(doc, position: types.Position) -> int:
    """``doc.offset_at_position(position)`` at a fraction of its cost on every keystroke (pygls
    splits the whole text into lines twice per call and walks the line a character at a time):
    the line starts come from one vectorised search for newlines, and an ASCII prefix of the line
    counts as it is. Other line breaks, wider characters and lines past the end go to pygls."""
    source = doc.source
    if any(c in source for c in _OTHER_BREAKS):
        return doc.offset_at_position(position)
    newlines = np.flatnonzero(np.frombuffer(source.encode("utf-32-le"), dtype=np.uint32) == 10)
    if position.line > len(newlines):
        return doc.offset_at_position(position)
    start = int(newlines[position.line - 1]) + 1 if position.line else 0
    end = int(newlines[position.line]) if position.line < len(newlines) else len(source)
    head = source[start : min(end, start + position.character)]
    return start + len(head) if head.isascii() else doc.offset_at_position(position)


class PositionMap:
    """Character offsets to LSP positions (line, code units of the negotiated encoding)."""

    _ASTRAL = re.compile("[\U00010000-\U0010ffff]")

    def __init__(self, text: str, num_units=None, utf16: bool = True):
        self.text = text
        self.num_units = num_units or _utf16_len
        self.line_starts = np.array([0] + [m.end() for m in re.finditer("\n", text)], dtype=np.int64)
        # Columns are plain character counts when every character is one code unit.
        self.simple = text.isascii() or (utf16 and not self._ASTRAL.search(text))

    def position(self, offset: int) -> tuple[int, int]:
        line = int(np.searchsorted(self.line_starts, offset, side="right")) - 1
        start = int(self.line_starts[line])
        segment = self.text[start:offset]
        return line, len(segment) if self.simple else self.num_units(segment)

    def positions(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``position`` for many offsets."""
        lines = np.searchsorted(self.line_starts, offsets, side="right") - 1
        starts = self.line_starts[lines]
        if self.simple:
            return lines, offsets - starts
        cols = np.array([self.num_units(self.text[s:o]) for s, o in zip(starts, offsets)], dtype=np.int64)
        return lines, cols


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2
