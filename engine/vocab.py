"""The vocabulary: token strings and their ids, with the three special tokens first.

Ids follow first appearance in the training text after ``<unk>``=0, ``<s>``=1, ``</s>``=2,
the order KenLM's ``lmplz`` uses (it decides one of lmplz's tie-breaks, see plugins/ngram).
"""

from __future__ import annotations

import bisect
import functools
import json
from pathlib import Path
from typing import Callable

import numpy as np

from engine.checked import passed_before
from engine.errors import ModelFormatError
from engine.files import parse_json, read_limited, regular_file
from engine.mapped import map_array

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIALS = (UNK, BOS, EOS)
NEWLINE = -1  # Vocabulary.line_ids' id for a line's end, which no token holds
VOCAB_FILE = "vocab.json"
MAX_ESCAPES = 10_000  # in a vocabulary file read a token at a time (TokenFile); more: read whole
ORDER_FILE = "vocab.order.npy"  # the words' ids sorted as typed and case-folded (Vocabulary.orders)


class Vocabulary:
    """Token <-> id mapping. Unknown tokens map to ``<unk>``.

    Its views are built on first use, not at load: ``tokens`` (the list: making 90,000 strings
    cost every start 10 ms; until then ``token(i)`` reads one from the file's bytes), ``ids``
    (a dict: 16-28 ms for 90,000 words in a fresh process) and ``orders`` (the words sorted for
    completion's prefix search, kept in ORDER_FILE beside the vocabulary: sorting them cost a
    prediction of a half-typed word 110-130 ms). A few lookups made before ``ids`` is built
    (``foretell predict``) search the sorted words instead (``get``)."""

    def __init__(self, tokens: "list[str] | TokenFile", stored_orders: np.ndarray | None = None, folder_name: str | None = None, checked: bool = False):
        """``stored_orders``: ORDER_FILE's array, checked to be ``orders`` unless ``checked``
        says it was when its files were last read (engine.checked)."""
        if isinstance(tokens, TokenFile):
            self._file = tokens
        else:
            self._file, self.tokens = None, list(tokens)
        self._size = len(tokens)
        if [self.token(i) for i in range(min(3, self._size))] != list(SPECIALS):
            raise ModelFormatError(f"{folder_name}: {VOCAB_FILE} is not a list of tokens" if folder_name else "vocabulary must start with <unk>, <s>, </s>")
        # (copied out of the file's map, which closes with it)
        usable = _are_orders(stored_orders, self._size, checked)
        self._stored_orders = np.array(stored_orders, dtype=np.int64) if usable else None
        self._folder_name = folder_name  # (read from this model folder: named in errors)
        # Its folder's files are those a deep check passed (engine.checked): a backend reading
        # the same folder asks this instead of reading the record again.
        self.checked_before = checked

    @functools.cached_property
    def tokens(self) -> list[str]:
        return self._file.strings()

    @property
    def token(self) -> Callable[[int], str]:
        """``tokens[i]`` as a function, without making the list: the list's own (in C, for the
        binary searches' keys) once it is made, until then one read from the file's bytes."""
        made = self.__dict__.get("tokens")
        return made.__getitem__ if made is not None else self._file.__getitem__

    @functools.cached_property
    def ids(self) -> dict[str, int]:
        ids = dict(zip(self.tokens, range(len(self.tokens))))  # (built in C)
        if len(ids) != len(self.tokens):
            raise self._duplicate_tokens()
        return ids

    @functools.cached_property
    def orders(self) -> tuple[np.ndarray, np.ndarray]:
        """The words' ids (the specials left out) sorted as typed, and sorted case-folded (a
        stable sort: equal folded words keep id order)."""
        if self._stored_orders is not None:
            return self._stored_orders[0], self._stored_orders[1]
        tokens, word_ids = self.tokens, range(len(SPECIALS), len(self.tokens))
        lowered = [t.lower() for t in tokens]
        exact, folded = sorted(word_ids, key=tokens.__getitem__), sorted(word_ids, key=lowered.__getitem__)
        return np.array(exact, dtype=np.int64), np.array(folded, dtype=np.int64)

    @functools.cached_property
    def line_ids(self) -> dict[str, int]:
        """``ids`` with "\\n" as NEWLINE: lines split in bulk keep their ends in the same lookup."""
        return self.ids | {"\n": NEWLINE}

    @functools.cached_property
    def utf8_words(self):
        """The words as a C hash table over their UTF-8 bytes (engine/_tsv.c's ``Words``), for
        the compiled reader of pretokenized text: built from the file's bytes, with no string a
        word and no ``ids``; None without the extension."""
        from engine.compiled import ALLOWED, tsv

        if tsv is None or not ALLOWED:
            return None
        if self._file is not None and "tokens" not in self.__dict__:
            data, starts, ends = self._file.utf8_spans()
        else:
            encoded = [token.encode("utf-8", "surrogatepass") for token in self.tokens]
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            data, ends = b"".join(encoded), np.cumsum(lengths)
            starts = ends - lengths
        try:
            return tsv.Words(data, np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(ends, dtype=np.int64))
        except ValueError as e:
            raise self._duplicate_tokens() from e

    def _duplicate_tokens(self) -> ModelFormatError:
        return duplicate_tokens(f"{self._folder_name}: {VOCAB_FILE}" if self._folder_name else "the vocabulary")

    def __len__(self) -> int:
        return self._size

    def __contains__(self, token: str) -> bool:
        return self.get(token) is not None

    def get(self, token: str, default: int | None = None) -> int | None:
        """``ids.get``; before ``ids`` is built, a binary search in the stored sorted words."""
        if "ids" in self.__dict__ or self._stored_orders is None:
            return self.ids.get(token, default)
        if token in SPECIALS:
            return SPECIALS.index(token)
        order = self.orders[0]
        at = bisect.bisect_left(order, token, key=self.token)
        return int(order[at]) if at < len(order) and self.token(order[at]) == token else default

    def id(self, token: str) -> int:
        return self.get(token, UNK_ID)

    def encode(self, tokens) -> np.ndarray:
        get = self.ids.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int32)

    def save(self, folder: Path) -> None:
        (folder / VOCAB_FILE).write_text(json.dumps(self.tokens, ensure_ascii=False), encoding="utf-8")
        np.save(folder / ORDER_FILE, np.stack(self.orders).astype(np.int32), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> "Vocabulary":
        path = folder / VOCAB_FILE
        try:
            data = read_limited(path, folder.name)
        except FileNotFoundError:
            raise ModelFormatError(f"{folder.name}: {VOCAB_FILE} is missing") from None
        tokens = TokenFile.of(data)
        if tokens is None:
            tokens = parse_json(data, path, folder.name)
            if not isinstance(tokens, list) or not _all_strings(tokens):
                raise ModelFormatError(f"{folder.name}: {VOCAB_FILE} is not a list of tokens")
        # Every token distinct and the sorted words a sort of them: checked once per version of
        # the files (the backend's own deep check records them when all of it passed).
        checked = passed_before(folder)
        if not checked:
            tokens = list(tokens)  # (every word made once, for this check and the vocabulary both)
            if len(set(tokens)) != len(tokens):
                raise duplicate_tokens(f"{folder.name}: {VOCAB_FILE}")
        return cls(tokens, _read_orders(folder), folder.name, checked)


class TokenFile:
    """The tokens of a vocabulary file as json.dumps writes them (``["<unk>", "<s>", "</s>",
    "the", ...]``), each made a string when asked for; the few with an escape (a quote, a
    backslash) are read by ``json``."""

    def __init__(self, data: bytes, starts: np.ndarray, ends: np.ndarray, escaped: frozenset[int]):
        self._data, self._starts, self._ends, self._escaped = data, starts, ends, escaped

    @classmethod
    def of(cls, data: bytes) -> "TokenFile | None":
        """``data``'s tokens, or None where the file is not in that form or holds more than a
        few escapes (then read as JSON). Every string is checked here as ``json`` would."""
        if not (data.startswith(b'["') and data.endswith(b'"]')):
            return None
        raw = np.frombuffer(data, dtype=np.uint8)
        quotes, slashes = np.flatnonzero(raw == ord('"')), np.flatnonzero(raw == ord("\\"))
        if raw.min() < 0x20 or len(slashes) > MAX_ESCAPES:  # (JSON escapes control characters)
            return None
        if len(slashes):  # a quote after an odd run of backslashes is inside a string
            after_slash = np.flatnonzero(raw[quotes - 1] == ord("\\")).tolist()
            quotes = np.delete(quotes, [i for i in after_slash if _run_before(data, int(quotes[i])) % 2])
        starts, ends = quotes[0::2] + 1, quotes[1::2]
        if len(starts) != len(ends):
            return None
        between = ends[:-1]
        if np.any(starts[1:] - between != 4) or np.any(raw[between + 1] != ord(",")) or np.any(raw[between + 2] != ord(" ")):
            return None
        escaped = frozenset(np.searchsorted(ends, slashes).tolist())
        beyond_ascii = np.searchsorted(ends, np.flatnonzero(raw >= 0x80))  # (decoding the whole file makes a string of up to 4 MB)
        try:
            for i in escaped:
                json.loads(data[starts[i] - 1:ends[i] + 1])
            for i in beyond_ascii[np.diff(beyond_ascii, prepend=-1) != 0].tolist():
                data[starts[i]:ends[i]].decode("utf-8")
        except ValueError:  # (UnicodeDecodeError included)
            return None
        return cls(data, starts, ends, escaped)

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i: int) -> str:
        i = range(len(self))[i]  # (an index error as a list's; a negative index counted from the end)
        start, end = self._starts[i], self._ends[i]
        if i in self._escaped:
            return json.loads(self._data[start - 1:end + 1])
        return self._data[start:end].decode("utf-8")

    def __iter__(self):
        return iter(self.strings())

    def utf8_spans(self) -> tuple[bytes, np.ndarray, np.ndarray]:
        """Bytes and where in them each token's UTF-8 lies: the file's own, and after them the
        few tokens written with an escape, decoded."""
        if not self._escaped:
            return self._data, self._starts, self._ends
        starts, ends, pieces, at = self._starts.copy(), self._ends.copy(), [self._data], len(self._data)
        for i in sorted(self._escaped):
            piece = self[i].encode("utf-8", "surrogatepass")
            starts[i], ends[i] = at, at + len(piece)
            pieces.append(piece)
            at += len(piece)
        return b"".join(pieces), starts, ends

    def strings(self) -> list[str]:
        return json.loads(self._data)


def duplicate_tokens(where: str) -> ModelFormatError:
    """The error for a vocabulary (``where``) that holds a token twice."""
    return ModelFormatError(f"{where} has duplicate tokens; not one foretell wrote")


def _run_before(data: bytes, at: int) -> int:
    """How many backslashes come right before ``data[at]``."""
    run = 0
    while data[at - 1 - run] == ord("\\"):
        run += 1
    return run


def _read_orders(folder: Path) -> np.ndarray | None:
    """ORDER_FILE's array, or None where it is missing (a model saved before it was kept) or
    cannot be read (the words are sorted again)."""
    try:  # (mapped: a file of the wrong shape is never read whole)
        return map_array(regular_file(folder / ORDER_FILE, folder.name))
    except (OSError, ValueError, ModelFormatError):
        return None


def _are_orders(orders: np.ndarray | None, size: int, checked: bool = False) -> bool:
    """Whether ``orders`` are two orders of the word ids of a vocabulary of ``size`` tokens:
    each a permutation of them (what the store holds is checked before it indexes anything;
    ``checked``: the permutations were, when these files were last read)."""
    if not isinstance(orders, np.ndarray) or orders.dtype != np.int32 or orders.shape != (2, size - len(SPECIALS)):
        return False
    expected = np.arange(len(SPECIALS), size, dtype=np.int32)
    return checked or all(np.array_equal(np.sort(row), expected) for row in orders)


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


class _Ids(dict):
    """Word -> id, where looking up a word not seen before gives it the next id (``tokens``'
    length) and appends it to ``tokens``: a long list is then looked up in one pass of
    ``dict.__getitem__`` in C, known words or new (a pass with a default of -1 for the new ones
    also read a line's end, whose id is -1, as new, and sent pretokenized text down a second,
    slower pass: 2.6 s for 12 million words, one pass 0.9 s)."""

    __slots__ = ("tokens",)

    def __missing__(self, word: str) -> int:
        self[word] = i = len(self.tokens)
        self.tokens.append(word)
        return i


class VocabularyBuilder:
    """Assigns ids by first appearance while a corpus streams past, then prunes on request.
    A line's end ("\\n", which no token holds) is looked up as NEWLINE, as in ``line_ids``."""

    def __init__(self, tokens: list[str] | None = None):
        """``tokens``: ids already given (specials first), to extend rather than start afresh."""
        self._start(list(tokens or SPECIALS), None)

    def _start(self, tokens: list[str], ids: dict[str, int] | None) -> None:
        self.tokens = tokens
        self.ids = _Ids(ids if ids is not None else {t: i for i, t in enumerate(tokens)} | {"\n": NEWLINE})
        self.ids.tokens = tokens

    def add(self, tokens: list[str]) -> list[int]:
        """The ids of ``tokens``, new ones given the next ids."""
        return list(map(self.ids.__getitem__, tokens))

    def truncate(self, size: int) -> None:
        """Forget the words given ids from ``size`` on."""
        for word in self.tokens[size:]:
            del self.ids[word]
        del self.tokens[size:]

    def copy(self) -> "VocabularyBuilder":
        """A builder that goes on from this one's words and leaves this one as it is."""
        twin = VocabularyBuilder.__new__(VocabularyBuilder)
        twin._start(list(self.tokens), self.ids)
        return twin

    def add_array(self, tokens: list[str]) -> np.ndarray:
        """``add`` as an int32 array, for long lists."""
        return np.fromiter(map(self.ids.__getitem__, tokens), dtype=np.int32, count=len(tokens))

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
