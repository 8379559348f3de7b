"""The vocabulary: token strings and their ids, with the three special tokens first.

Ids follow first appearance in the training text after ``<unk>``=0, ``<s>``=1, ``</s>``=2,
the order KenLM's ``lmplz`` uses (it decides one of lmplz's tie-breaks, see plugins/ngram).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from engine.errors import ModelFormatError
from engine.files import read_json

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIALS = (UNK, BOS, EOS)
NEWLINE = -1  # Vocabulary.line_ids' id for a line's end, which no token holds
VOCAB_FILE = "vocab.json"


class Vocabulary:
    """Token <-> id mapping. Unknown tokens map to ``<unk>``."""

    def __init__(self, tokens: list[str]):
        if list(tokens[:3]) != list(SPECIALS):
            raise ModelFormatError("vocabulary must start with <unk>, <s>, </s>")
        self.tokens = list(tokens)
        self.ids = dict(zip(self.tokens, range(len(self.tokens))))  # (built in C: read at every start)
        if len(self.ids) != len(self.tokens):
            raise ModelFormatError("vocabulary has duplicate tokens")

    @functools.cached_property
    def line_ids(self) -> dict[str, int]:
        """``ids`` with "\\n" as NEWLINE: lines split in bulk keep their ends in the same lookup."""
        return self.ids | {"\n": NEWLINE}

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.ids

    def id(self, token: str) -> int:
        return self.ids.get(token, UNK_ID)

    def encode(self, tokens) -> np.ndarray:
        get = self.ids.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int32)

    def save(self, folder: Path) -> None:
        (folder / VOCAB_FILE).write_text(json.dumps(self.tokens, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "Vocabulary":
        try:
            tokens = read_json(folder / VOCAB_FILE, folder.name)
        except FileNotFoundError:
            raise ModelFormatError(f"{folder.name}: {VOCAB_FILE} is missing") from None
        if not isinstance(tokens, list) or not _all_strings(tokens) or tokens[: len(SPECIALS)] != list(SPECIALS):
            raise ModelFormatError(f"{folder.name}: {VOCAB_FILE} is not a list of tokens")
        try:
            return cls(tokens)
        except ModelFormatError:  # duplicates
            raise ModelFormatError(f"{folder.name}: {VOCAB_FILE} is not a list of tokens") from None


def sentences_of_lines(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids of whole lines, NEWLINE at each line's end, as the sentences of the lines: ``<s>``
    before each, ``</s>`` for its end; and where each sentence ends (one past its ``</s>``)."""
    line_ends = np.flatnonzero(ids == NEWLINE)
    ids = np.insert(np.where(ids == NEWLINE, EOS_ID, ids), np.concatenate(([0], line_ends[:-1] + 1)).astype(np.intp), BOS_ID)
    return ids, line_ends + np.arange(2, len(line_ends) + 2)


def _all_strings(items: list) -> bool:
    """Whether every item is a string (``str.join`` checks them in C: a 90,000-word vocabulary
    is read at every start)."""
    try:
        "".join(items)
    except TypeError:
        return False
    return True


class VocabularyBuilder:
    """Assigns ids by first appearance while a corpus streams past, then prunes on request.
    A line's end ("\\n", which no token holds) is looked up as NEWLINE, as in ``line_ids``."""

    def __init__(self, tokens: list[str] | None = None):
        """``tokens``: ids already given (specials first), to extend rather than start afresh."""
        self.tokens: list[str] = list(tokens or SPECIALS)
        self.ids: dict[str, int] = {t: i for i, t in enumerate(self.tokens)} | {"\n": NEWLINE}

    def add(self, tokens: list[str]) -> list[int]:
        """The ids of ``tokens``, new ones given the next ids."""
        out = list(map(self.ids.get, tokens))  # in bulk: after the first pages most words are known
        if None in out:
            for j, t in enumerate(tokens):
                if out[j] is None:
                    out[j] = self._new(t)
        return out

    def add_array(self, tokens: list[str]) -> np.ndarray:
        """``add`` as an int32 array, for long lists: the new words are found by numpy (the
        None of an unknown word reads as NaN), not by a loop over every token."""
        ids = np.array(list(map(self.ids.get, tokens)), dtype=np.float64)
        for j in np.flatnonzero(np.isnan(ids)).tolist():
            ids[j] = self._new(tokens[j])
        return ids.astype(np.int32)

    def _new(self, token: str) -> int:
        """The id of ``token``, given the next one if it has none yet."""
        i = self.ids.get(token)
        if i is None:
            i = self.ids[token] = len(self.tokens)
            self.tokens.append(token)
        return i

    def finish(self, counts: np.ndarray, min_count: int = 1, max_size: int | None = None):
        """The final vocabulary, and the old-id -> new-id map when words were pruned (to
        ``<unk>``) or None when every word was kept. ``counts``: occurrences per old id."""
        keep = counts >= min_count
        keep[: len(SPECIALS)] = True
        if max_size is not None and keep.sum() > max_size:
            words = np.flatnonzero(keep[len(SPECIALS):]) + len(SPECIALS)
            # Most frequent first; ties keep first appearance (stable sort).
            order = words[np.argsort(-counts[words], kind="stable")]
            keep[len(SPECIALS):] = False
            keep[order[: max(0, max_size - len(SPECIALS))]] = True
        if keep.all():
            return Vocabulary(self.tokens), None
        new_id = np.full(len(self.tokens), UNK_ID, dtype=np.int32)
        kept = np.flatnonzero(keep)
        new_id[kept] = np.arange(len(kept), dtype=np.int32)
        return Vocabulary([self.tokens[i] for i in kept]), new_id
