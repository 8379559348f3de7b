"""Text to sentences of tokens, every token with its character offsets in the input.

Prose mode keeps case, splits words (letters and digits with inner apostrophes and hyphens),
numbers and punctuation, ends sentences at ``. ! ?`` before a capital or at a line's end and at
paragraph boundaries, and steps over Markdown/reST markup (headings, underlines, fences, code
blocks, emphasis, roles, link targets) so it does not turn into words. Pretokenized mode reads
text the way KenLM does: one sentence a line, tokens separated by runs of spaces or tabs.

Both work line by line, so a corpus streams through without being held in memory.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import re
from dataclasses import dataclass
from itertools import repeat
from typing import Iterable, Iterator

import numpy as np

from engine.scripts import UNIT, UNSPACED_CLASS


@dataclass(slots=True, unsafe_hash=True)  # not frozen: a frozen dataclass is 3x slower to make,
class Token:  # and tokens are made by the million; nothing changes one once made
    text: str
    start: int
    end: int


@functools.cache
def _token_pattern() -> re.Pattern:
    """The token pattern, compiled on first use: plain words and a word with one mark after it
    never need it (``_tokens_of_piece``), and compiling it cost every ``foretell predict`` 7 ms.

    Alternatives that start with a word character come first: most tokens are words, and no
    other alternative can start where they do (markup and punctuation never start with a
    letter, digit or unspaced unit), so trying them first changes no match and saves the
    failed tries."""
    return re.compile(
        r"""
    (?P<url>(?:https?://|www\.)[^\s<>()\[\]`"']*[^\s<>()\[\]`"'.,;:!?])
  | (?P<abbr>(?:[^\W\d_UNSPACED]\.){2,}) # e.g. U.S.
  | (?P<number>\d+(?:[.,:]\d+)+)        # 3.14  1,000  10:30
  | (?P<word>[^\W_UNSPACED]+(?:['’\-][^\W_UNSPACED]+)*)
  | (?P<unit>UNIT)                     # a character or cluster of a script without spaces
  | (?P<skip>
        :[\w-]+:(?=`)                  # reST role  :ref:`...`
      | \]\([^)\s]*\)                  # Markdown link target  ](url)
      | <(?:https?://|mailto:)[^>\s]*>  # reST/Markdown autolink target  <https://...>
      | [*_`#~=^|\\\[\]{}<>+]           # emphasis, code, table and link markup
      | [\x00-\x08\x0e-\x1f\x7f\ufeff]    # control characters
    )
  | (?P<punct>\.\.\.|--+|[^\s\w])
    """.replace("UNSPACED", UNSPACED_CLASS).replace("UNIT", UNIT),
        re.VERBOSE,
    )


_STRUCTURAL = re.compile(r"^\s*(?:([=\-~^*+#`:.'\"_])\1{2,}|\+[-=+]+\+)\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s+|$)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|[a-zA-Z][.)])\s+")
_QUOTE = re.compile(r"^\s*(?:>\s*)+")
_DIRECTIVE = re.compile(r"^\s*\.\.\s+(?:[\w:-]+::|\[[^\]]*\]|_[^:]*:|\|[^|]*\|)?")
_TERMINAL = {".", "!", "?", "...", "…", "。", "！", "？", "．"}
_UNCASED_TERMINAL = {"。", "！", "？"}  # Chinese and Japanese: the next sentence has no capital to wait for
_CLOSERS = {'"', "'", ")", "]", "”", "’", "»", "」", "』", "）", "】"}
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "fig", "no", "vol", "cf", "approx", "ca",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "inc", "ltd",
}


# No token holds or looks past whitespace, so a line's tokens are those of its runs of
# non-space characters read one by one (``str.split()``, whose whitespace is the pattern's
# ``\s``, each found by ``str.find`` after the one before); most runs are a plain word, or a
# word and one mark after it, and take no trip through the token pattern at all.
_TRAILING_MARKS = frozenset(",.;:!?)\"'")

SentenceColumns = tuple[list[str], list[int], list[int]]  # a sentence's tokens: texts, starts and ends


def _tokens_of_piece(text: str, begin: int, texts: list[str], starts: list[int], ends: list[int]) -> None:
    """Append the tokens of one run of non-space characters that starts at ``begin``, a run
    other than a plain ASCII word (``feed`` appends those itself)."""
    word = text[:-1]
    if text[-1] in _TRAILING_MARKS and text.isascii() and word.isalnum():  # a word, then a mark that ends nothing longer
        end = begin + len(word)
        texts += (word, text[-1])
        starts += (begin, end)
        ends += (end, end + 1)
        return
    for m in _token_pattern().finditer(text):
        if m.lastgroup != "skip":
            texts.append(m.group())
            starts.append(begin + m.start())
            ends.append(begin + m.end())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _starts_sentence(text: str) -> bool:
    c = text[0]
    return c.isupper() or c.isdigit() or c in "\"'“‘([«¿¡"


def as_tokens(sentence: SentenceColumns) -> list[Token]:
    """A sentence's columns as token objects."""
    return list(map(Token, *sentence))


class ProseTokenizer:
    """Feeds lines, yields finished sentences as columns (``SentenceColumns``): the training
    path keeps only the texts, and a token object a word was 15 % of its tokenizing. Call
    ``finish()`` at the end of a document."""

    PLAIN = (False, None, False, 0)

    def __init__(self, state: tuple = PLAIN, pause_every: int | None = None):
        self._texts: list[str] = []  # the pending sentence's tokens, a column each
        self._starts: list[int] = []
        self._ends: list[int] = []
        # Yield None every this many tokens of a line, so a caller can pause inside a long one.
        self._pause_every = pause_every
        # Inside a code fence; inside a reST literal block (its paragraph's indent); after a
        # paragraph ending in "::"; the current paragraph's indent.
        self._in_fence, self._literal_indent, self._expect_literal, self._paragraph_indent = state
        self._scanned = 0  # pending tokens already looked at for sentence ends

    @property
    def state(self) -> tuple:
        """What the next line's reading depends on: lets blocks be tokenized one at a time."""
        return (self._in_fence, self._literal_indent, self._expect_literal, self._paragraph_indent)

    @staticmethod
    def reads_as_plain(state: tuple) -> bool:
        """Whether text after a blank line, reached in ``state``, reads as a document's start:
        outside fences and literal blocks, the paragraph indent is set again before it is read."""
        return state[:3] == ProseTokenizer.PLAIN[:3]

    def feed(self, line: str, offset: int) -> Iterator[SentenceColumns | None]:
        body = line.rstrip("\r\n")
        # Most lines of prose start with a letter not followed by "." or ")": no line markup
        # (fence, underline, directive, heading, list item, quote) can start that way.
        plain = body[:1].isalpha() and body[1:2] not in (".", ")")
        if not plain and _FENCE.match(body):
            self._in_fence = not self._in_fence
            yield from self.finish()
            return
        if self._in_fence:
            return
        if not plain and not body.strip():
            yield from self.finish()
            return
        indent = 0 if plain else _indent(body)
        if self._literal_indent is not None:
            if indent > self._literal_indent:
                return
            self._literal_indent = None
        if self._expect_literal:
            self._expect_literal = False
            if indent > self._paragraph_indent:
                self._literal_indent = self._paragraph_indent
                return
        if not plain and _STRUCTURAL.match(body):
            yield from self.finish()
            return
        start = 0
        standalone = False
        if not plain:
            for pattern in (_DIRECTIVE, _HEADING, _LIST_ITEM):
                m = pattern.match(body)
                if m:
                    yield from self.finish()
                    start = m.end()
                    standalone = pattern is _HEADING
                    break
            else:
                m = _QUOTE.match(body)
                if m:
                    start = m.end()
        if not self._texts:
            self._paragraph_indent = indent
        if body.rstrip().endswith("::"):
            self._expect_literal = True
        if self._pause_every:
            yield from self._read_pausing(body, start, offset)
        else:
            texts, starts, ends = self._texts, self._starts, self._ends
            find, at = body.find, start
            for text in (body[start:] if start else body).split():  # (split and find: no match objects)
                at = find(text, at)
                if text.isascii() and text.isalnum():  # most runs: one word (no other alternative of the pattern matches letters and digits alone)
                    begin = offset + at
                    texts.append(text)
                    starts.append(begin)
                    ends.append(begin + len(text))
                else:
                    _tokens_of_piece(text, offset + at, texts, starts, ends)
                at += len(text)
        yield from self._split_sentences()
        if standalone or self._ends_at_line_end():
            yield from self.finish()

    def _read_pausing(self, body: str, start: int, offset: int) -> Iterator[None]:
        """The line's tokens one match at a time, pausing every ``pause_every`` of them: a line
        of a script written without spaces is one run of non-space characters."""
        texts, starts, ends, pause = self._texts, self._starts, self._ends, self._pause_every
        countdown = pause
        for m in _token_pattern().finditer(body, start):
            if m.lastgroup == "skip":
                continue
            texts.append(m.group())
            starts.append(offset + m.start())
            ends.append(offset + m.end())
            countdown -= 1
            if countdown == 0:
                countdown = pause
                yield None

    def _ends_at_line_end(self) -> bool:
        """A sentence end that closes a line ends the sentence whatever the next line starts
        with: notes written in lower case still come apart into sentences."""
        texts = self._texts
        i = len(texts) - 1
        while i >= 0 and texts[i] in _CLOSERS:
            i -= 1
        return i >= 0 and texts[i] in _TERMINAL and not self._is_abbreviation(i)

    def finish(self) -> Iterator[SentenceColumns]:
        self._scanned = 0
        if self._texts:
            sentence = (self._texts, self._starts, self._ends)
            self._texts, self._starts, self._ends = [], [], []
            yield sentence

    def _split_sentences(self) -> Iterator[SentenceColumns]:
        """Cut the pending tokens after each sentence end that has a sentence start after it.
        Tokens already looked at are not looked at again (a paragraph's lines would be read
        over and over), except a sentence end still waiting for the token after it."""
        texts = self._texts
        n = len(texts)
        cut = 0
        i = self._scanned
        while i < n:
            if texts[i] in _TERMINAL and not self._is_abbreviation(i):
                end = i + 1
                while end < n and texts[end] in _CLOSERS:
                    end += 1
                if end == n:  # decided by the next line's first token
                    break
                if _starts_sentence(texts[end]) or texts[i] in _UNCASED_TERMINAL:
                    yield texts[cut:end], self._starts[cut:end], self._ends[cut:end]
                    cut = end
                i = end
            else:
                i += 1
        if cut:
            self._texts, self._starts, self._ends = texts[cut:], self._starts[cut:], self._ends[cut:]
        self._scanned = i - cut

    def _is_abbreviation(self, i: int) -> bool:
        texts = self._texts
        if texts[i] != "." or i == 0:
            return False
        before = texts[i - 1]
        adjacent = self._ends[i - 1] == self._starts[i]
        return adjacent and (before.lower() in _ABBREVIATIONS or (len(before) == 1 and before.isalpha()))


_SPACES = re.compile(r"[^ \t]+")
_LINES = re.compile(r"[^\n]*\n|[^\n]+")


def iter_sentences(lines: Iterable[str], pretokenized: bool = False, offset: int = 0, tokenizer: ProseTokenizer | None = None) -> Iterator[list[Token]]:
    """Sentences of ``lines`` (each with its line ending), offsets counted from ``offset``;
    prose read by ``tokenizer`` when given (its ``state`` afterwards: where the text left off)."""
    return map(as_tokens, iter_columns(lines, pretokenized, offset, tokenizer))


def iter_columns(lines: Iterable[str], pretokenized: bool = False, offset: int = 0, tokenizer: ProseTokenizer | None = None) -> Iterator[SentenceColumns]:
    """``iter_sentences`` with each sentence as columns (texts, starts, ends), no token objects."""
    if pretokenized:
        for line in lines:
            matches = list(_SPACES.finditer(line.rstrip("\r\n")))
            yield [m.group() for m in matches], [offset + m.start() for m in matches], [offset + m.end() for m in matches]
            offset += len(line)
        return
    tok = tokenizer or ProseTokenizer()
    for line in lines:
        yield from tok.feed(line, offset)
        offset += len(line)
    yield from tok.finish()


_BLOCK = re.compile(r"(?:^[^\n]*\S[^\n]*(?:\n|\Z))+", re.M)


def blocks(text: str) -> Iterator[tuple[int, str]]:
    """(offset, text) of each run of non-blank lines. Blank lines end sentences, so tokenizing
    blocks one by one, each from the state the previous one left, equals tokenizing the text."""
    for m in _BLOCK.finditer(text):
        yield m.start(), m.group()


def tokenize_block(text: str, offset: int = 0, state: tuple = ProseTokenizer.PLAIN) -> tuple[list[SentenceColumns], tuple]:
    """Sentences (as columns) of one block (see ``blocks``) and the tokenizer state after it."""
    steps = tokenize_block_steps(text, offset, state, None)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def tokenize_block_steps(text: str, offset: int, state: tuple, pause_every: int | None):
    """``tokenize_block`` as a generator that yields None every ``pause_every`` tokens (inside
    a long line too) and returns its result: an editor's analysis can pause there."""
    tok = ProseTokenizer(state, pause_every)
    sentences = []
    for line in split_lines(text):
        for sentence in tok.feed(line, offset):
            if sentence is None:
                yield
            else:
                sentences.append(sentence)
        offset += len(line)
    sentences.extend(tok.finish())
    return sentences, tok.state


def iter_words(lines: Iterable[str], tokenizer: ProseTokenizer | None = None) -> Iterator[list[str]]:
    """Sentences of prose as lists of token strings: the training path, no token objects made."""
    for texts, _, _ in iter_columns(lines, tokenizer=tokenizer):
        yield texts


def pretokenized_words(block: str) -> list[str]:
    """The tokens of whole lines of pretokenized text, each line's end a "\\n" token: tokens lie
    between runs of spaces or tabs, as KenLM reads them and as ``iter_sentences`` does line by
    line, but split in bulk (no token objects): training and scoring read text alike."""
    if "\r" in block and block.count("\r") == block.count("\r\n"):  # Windows line ends only
        block = block.replace("\r\n", "\n")
    if "\r" in block:  # the line-by-line reader strips every \r before a line's end, keeps others
        return pretokenized_columns(block)[0]
    if not block.endswith("\n"):
        block += "\n"
    return list(filter(None, block.replace("\t", " ").replace("\n", " \n ").split(" ")))


def pretokenized_columns(block: str, offset: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``pretokenized_words`` of ``block`` with each word's character offsets (counted from
    ``offset``; -1 for a line's end), as ``iter_sentences`` gives them but without a token
    object a word (making those took ``score`` 0.4 s of every 400,000 tokens)."""
    crlf = "\r" in block and block.count("\r") == block.count("\r\n") == block.count("\n")
    if "\r" in block and not crlf:  # (the line-by-line reader's rules for a stray \r, mixed line ends)
        tokens = [(t.text, t.start, t.end) for sentence in iter_sentences(split_lines(block), True, offset) for t in (*sentence, Token("\n", -1, -1))]
        words, starts, ends = zip(*tokens) if tokens else ((), (), ())
        return list(words), np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)
    text = (block.replace("\r\n", "\n") if crlf else block).replace("\t", " ")
    if not text.endswith("\n"):
        text += "\n"
    pieces = text.replace("\n", " \n ").split(" ")  # a word, a "\n" or "" (between two spaces) each
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    # Each line gives a piece more than its spaces, then its "\n" (a count a line, not a test a piece).
    per_line = np.fromiter(map(str.count, text.split("\n")[:-1], repeat(" ")), dtype=np.int64) + 2
    newline = np.zeros(len(pieces), dtype=bool)
    newline[np.cumsum(per_line) - 1] = True
    lines_before = np.cumsum(newline) - newline
    # Where each piece starts in the text split, less the two spaces put around each line end
    # before it (and the \r taken out of each, for Windows line ends).
    starts = offset + np.cumsum(lengths + 1) - lengths - 1 - (1 if crlf else 2) * lines_before
    kept = np.flatnonzero(lengths)
    starts, newline = starts[kept], newline[kept]
    starts[newline] = -1
    ends = np.where(newline, -1, starts + lengths[kept])
    return list(filter(None, pieces)), starts, ends


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split on newlines only (so offsets and KenLM agree)."""
    return _LINES.findall(text)


def tokenize(text: str, pretokenized: bool = False) -> list[list[Token]]:
    """All sentences of ``text``, each a list of tokens with offsets into ``text``."""
    with _collector_paused():
        return list(iter_sentences(split_lines(text), pretokenized))


@contextlib.contextmanager
def _collector_paused():
    """Tokens and their lists hold no reference cycles, but with millions of them alive the
    cyclic garbage collector walks them all again and again: tokenizing 1.4M tokens of books
    took 5.5-6.9 s with it running, 2.4 s with it paused."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
