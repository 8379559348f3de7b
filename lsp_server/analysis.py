"""A document's tokens and per-token surprisal, kept up to date cheaply as the user types.

The text is cut into blocks (runs of non-blank lines). A block's tokens depend only on its text
and the tokenizer state the previous block left, so unchanged blocks are reused as they are. For
models whose sentences are independent (n-gram: every sentence starts afresh at ``<s>``) their
scores are reused too, and an edit re-scores only the blocks it touched; for models that carry
state across sentences every block from the first changed one on is re-scored.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

from engine.model import LanguageModel
from engine.scoring import encode
from engine.tokenizer import ProseTokenizer, Token, blocks, tokenize_block
from engine.vocab import BOS_ID, EOS, UNK_ID

LOG2E = 1 / math.log(2)


@dataclass
class Block:
    start: int
    text: str
    state_in: tuple
    state_out: tuple
    sentences: list[list[Token]] | None  # offsets relative to the block's start; dropped once read
    ids: np.ndarray  # <s> w ... </s> per sentence
    stats: tuple | None = None  # (logprob, rank, entropy) over ids, NaN at <s>
    starts: np.ndarray | None = None  # per scored token (words and </s>): offset in the block, -1 for </s>
    ends: np.ndarray | None = None
    texts: list | None = None
    carry: object = None  # models with state across sentences: the state after this block

    def __post_init__(self):
        if self.starts is None:
            tokens = [t for sentence in self.sentences for t in (*sentence, None)]
            self.starts = np.array([-1 if t is None else t.start for t in tokens], dtype=np.int64)
            self.ends = np.array([-1 if t is None else t.end for t in tokens], dtype=np.int64)
            self.texts = [EOS if t is None else t.text for t in tokens]
        self.sentences = None  # the arrays above say it all; fewer objects for the GC to walk

    @property
    def key(self):
        return (self.text, self.state_in)


class DocumentAnalysis:
    """Tokens (words and each sentence's ``</s>``) with offsets, log-probability, rank, entropy."""

    def __init__(self, model: LanguageModel, text: str, previous: "DocumentAnalysis | None" = None, max_chars: int = 2_000_000):
        self.model = model
        self.text = text
        self.truncated = len(text) > max_chars
        reusable = {}
        if previous is not None and previous.model is model:
            reusable = {b.key: b for b in previous.blocks}
        self.blocks: list[Block] = []
        state = ProseTokenizer.PLAIN
        first_changed = None
        for offset, block_text in blocks(text[:max_chars]):
            old = reusable.get((block_text, state))
            if old is not None:
                block = Block(offset, block_text, state, old.state_out, None, old.ids, old.stats, old.starts, old.ends, old.texts, old.carry)
            else:
                sentences, state_out = tokenize_block(block_text, 0, state)
                block = Block(offset, block_text, state, state_out, sentences, encode(model, sentences))
                if first_changed is None:
                    first_changed = len(self.blocks)
            self.blocks.append(block)
            state = block.state_out
        self._score(first_changed)
        self._flatten()

    def _score(self, first_changed: int | None) -> None:
        if getattr(self.model, "sentence_independent", False):
            self._score_all([b for b in self.blocks if b.stats is None])
        elif hasattr(self.model, "token_stats_from"):
            # State runs across sentences: every block from the first changed one on is
            # re-scored, continuing from the state the block before it ended in.
            start = first_changed if first_changed is not None else len(self.blocks)
            carry = self.blocks[start - 1].carry if start > 0 else None
            for block in self.blocks[start:]:
                *block.stats, carry = self.model.token_stats_from(block.ids, carry)
                block.carry = carry
        else:
            start = first_changed if first_changed is not None else len(self.blocks)
            self._score_all(self.blocks[start:] + [b for b in self.blocks[:start] if b.stats is None])

    def _score_all(self, todo: list[Block]) -> None:
        if not todo:
            return
        ids = np.concatenate([b.ids for b in todo])
        logprob, rank, entropy = self.model.token_stats(ids)
        at = 0
        for b in todo:
            n = len(b.ids)
            b.stats = (logprob[at : at + n], rank[at : at + n], entropy[at : at + n])
            at += n

    def _flatten(self) -> None:
        """Document-wide arrays from the blocks' own (offsets relative to each block)."""
        blocks_ = self.blocks
        if not blocks_:
            blocks_ = [Block(0, "", ProseTokenizer.PLAIN, ProseTokenizer.PLAIN, [], np.zeros(0, np.int64), (np.zeros(0), np.zeros(0, np.int64), np.zeros(0)))]
        sizes = np.array([len(b.starts) for b in blocks_])
        shift = np.repeat(np.array([b.start for b in blocks_], dtype=np.int64), sizes)
        relative_starts = np.concatenate([b.starts for b in blocks_])
        is_word = relative_starts >= 0
        self.starts = np.where(is_word, relative_starts + shift, -1)
        self.ends = np.where(is_word, np.concatenate([b.ends for b in blocks_]) + shift, -1)
        self.texts = list(itertools.chain.from_iterable(b.texts for b in blocks_))
        scored = [b.ids != BOS_ID for b in blocks_]
        self.ids = np.concatenate([b.ids[m] for b, m in zip(blocks_, scored)])
        self.logprob = np.concatenate([b.stats[0][m] for b, m in zip(blocks_, scored)])
        self.rank = np.concatenate([b.stats[1][m] for b, m in zip(blocks_, scored)])
        self.entropy = np.concatenate([b.stats[2][m] for b, m in zip(blocks_, scored)])
        self.bits = -self.logprob * LOG2E
        self.oov = self.ids == UNK_ID
        self.words = np.flatnonzero(is_word)  # positions that are words, not </s>

    @property
    def perplexity(self) -> float:
        return float(2 ** self.bits.mean()) if len(self.bits) else float("nan")

    def token_at(self, offset: int) -> int | None:
        """Index of the word token covering character ``offset`` (or ending right at it)."""
        word_starts = self.starts[self.words]
        i = bisect.bisect_right(word_starts, offset) - 1
        if i >= 0 and offset <= self.ends[self.words[i]]:
            return int(self.words[i])
        return None

    def state_before(self, index: int):
        """The model state just before token ``index`` (replays its sentence)."""
        sentence_start = index
        while sentence_start > 0 and self.starts[sentence_start - 1] >= 0:
            sentence_start -= 1
        state = self.model.initial_state()
        for i in range(sentence_start, index):
            state = self.model.advance(state, int(self.ids[i]))
        return state


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
