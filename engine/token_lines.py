"""A batch's tokens as one UTF-8 text, a token a line, with no string object a token.

What the compiled reader of pretokenized text gives (engine/_tsv.c's ``columns``) and the
compiled table takes as it is (``rows``): making, joining, encoding and freeing a million token
strings was a quarter of `score`'s reading and writing. It reads as a sequence of strings for
everything else (``--json``, other encodings)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class TokenLines(Sequence):
    def __init__(self, text: bytes, ends: np.ndarray):
        self.text = text  # the tokens' UTF-8 bytes joined by b"\n" (no token holds one)
        self.ends = ends  # int64: where each token's bytes end in ``text``

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return list(self)[index]
            if start >= stop:
                return TokenLines(b"", self.ends[:0])
            first = self._start(start)
            return TokenLines(self.text[first : int(self.ends[stop - 1])], self.ends[start:stop] - first)
        i = range(len(self))[index]  # (an index error as a list's)
        return self.text[self._start(i) : int(self.ends[i])].decode("utf-8")

    def __iter__(self):
        return iter(self.text.decode("utf-8").split("\n") if len(self) else ())

    def _start(self, i: int) -> int:
        return int(self.ends[i - 1]) + 1 if i else 0

    @classmethod
    def joined(cls, parts: list["TokenLines"]) -> "TokenLines":
        """The tokens of ``parts`` one after another."""
        parts = [part for part in parts if len(part)]
        texts, ends, at = [], [], 0
        for part in parts:
            texts.append(part.text)
            ends.append(part.ends + at)
            at += len(part.text) + 1
        return cls(b"\n".join(texts), np.concatenate(ends) if ends else np.empty(0, dtype=np.int64))


def joined_tokens(parts: list[Sequence[str]]) -> Sequence[str]:
    """Tokens of several pieces one after another: TokenLines where every piece is one."""
    if all(isinstance(part, TokenLines) for part in parts):
        return TokenLines.joined(parts)
    return [token for part in parts for token in part]
