"""A document's tokens and per-token surprisal, kept up to date cheaply as the user types.

The text is cut into blocks (runs of non-blank lines). A block's tokens depend only on its text
and the tokenizer state the previous block left, so unchanged blocks keep their tokens. Scores
are reused in one of two ways:

- Sentence-independent models (n-gram, window: every sentence starts afresh at ``<s>``): a
  block's scores depend only on its ids, so an edit re-scores only the blocks it touched.
- Models with state across sentences (rnn, cache, mixtures with them): the document is one
  stream. Scoring restarts at the first changed sentence, from the state the previous analysis
  had there; past the edit, at every sentence start, the recomputed state is compared with the
  previous analysis's state at the same place, and once they agree (``model.states_agree``:
  the states of tanh and LSTM networks forget) the rest is copied.

Building is a generator of bounded steps (``steps()``), so a server can answer interactive
requests between steps and abandon an analysis whose document has moved on. A stopped analysis
is still a good base: the next one reuses whatever it finished.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from engine.distribution import LOG2E
from engine.model import LanguageModel
from engine.scoring import sentence_rows
from engine.tokenizer import ProseTokenizer, blocks, tokenize_block_steps
from engine.vocab import BOS_ID, UNK_ID

MAX_CHARS = 2_000_000  # analysis stops here: bounded work and memory on huge files
STEP_CHARS = 4_000  # characters tokenized per step
STEP_WORDS = 1_000  # tokens of one long block tokenized per step
STEP_TOKENS = 2_048  # tokens scored per step (sentence-independent models)
STEP_STREAM_TOKENS = 256  # tokens scored per step (models with state: a recurrent step is dearer)


@dataclass
class Block:
    start: int
    text: str
    state_in: tuple
    state_out: tuple
    ids: np.ndarray  # <s> w ... </s> per sentence
    starts: np.ndarray  # per scored token (words and </s>): offset in the block, -1 for </s>
    ends: np.ndarray
    texts: list
    stats: tuple | None = None  # (logprob, rank, entropy) over ids, NaN at <s> (sentence-independent models)

    @classmethod
    def tokenized(cls, start: int, text: str, state_in: tuple, model: LanguageModel):
        """A generator that tokenizes the block, yielding every STEP_WORDS tokens, and returns it."""
        sentences, state_out = yield from tokenize_block_steps(text, 0, state_in, STEP_WORDS)
        ids, (texts, starts, ends) = sentence_rows(model.vocab, sentences)
        return cls(start, text, state_in, state_out, ids, starts, ends, texts)

    def moved_to(self, start: int) -> "Block":
        return Block(start, self.text, self.state_in, self.state_out, self.ids, self.starts, self.ends, self.texts, self.stats)

    @property
    def key(self):
        return (self.text, self.state_in)


class Stream:
    """The whole document's id stream scored with state carried across sentences: statistics
    for ``done`` positions (whole sentences) and the model state at each sentence start."""

    def __init__(self, ids: np.ndarray):
        self.ids = ids
        self.starts = np.flatnonzero(ids == BOS_ID)  # sentence k opens at starts[k]
        self.logprob = np.full(len(ids), np.nan)
        self.rank = np.zeros(len(ids), dtype=np.int64)
        self.entropy = np.full(len(ids), np.nan)
        self.states: list = [None] * (len(self.starts) + 1)  # states[k]: at the start of sentence k
        self.sentences_done = 0

    @property
    def done(self) -> int:
        """Positions scored: the sentences before ``sentences_done``."""
        k = self.sentences_done
        return int(self.starts[k]) if k < len(self.starts) else len(self.ids)

    def copy_from(self, other: "Stream", at: int, other_at: int, sentences: int, other_sentence: int) -> None:
        """Take ``other``'s scores for ``sentences`` sentences from sentence ``other_sentence``
        (position ``other_at``) as this stream's from sentence ``sentences_done`` (position ``at``)."""
        k = self.sentences_done
        end = int(other.starts[other_sentence + sentences]) if other_sentence + sentences < len(other.starts) else len(other.ids)
        span = slice(at, at + end - other_at)
        self.logprob[span] = other.logprob[other_at:end]
        self.rank[span] = other.rank[other_at:end]
        self.entropy[span] = other.entropy[other_at:end]
        self.states[k + 1 : k + sentences + 1] = other.states[other_sentence + 1 : other_sentence + sentences + 1]
        self.sentences_done = k + sentences


class DocumentAnalysis:
    """Tokens (words and each sentence's ``</s>``) with offsets, log-probability, rank, entropy.

    ``DocumentAnalysis(model, text, previous)`` analyses at once; with ``run=False`` nothing is
    done until ``steps()`` is iterated. ``complete`` says whether it finished."""

    def __init__(self, model: LanguageModel, text: str, previous: "DocumentAnalysis | None" = None, max_chars: int = MAX_CHARS,
                 run: bool = True, window_start: int = 0):
        self.model = model
        self.text = text
        self.max_chars = max_chars
        # Characters window_start : window_start + max_chars are analysed (a huge document's
        # visible part); offsets stay the document's.
        self.window_start = max(0, min(window_start, len(text) - max_chars)) if len(text) > max_chars else 0
        self.truncated = len(text) > max_chars
        self.complete = False
        self.blocks: list[Block] = []
        self.stream: Stream | None = None
        self.tokenized = False
        self.priority: tuple[int, int] | None = None  # characters to score first (what the editor shows)
        usable = previous is not None and previous.model is model
        # Blocks that may be reused: the previous analysis's, and what it had itself been
        # handed but did not reach when it was stopped.
        self._reusable = {}
        if usable:
            if not previous.complete:
                self._reusable.update(previous._reusable)
            self._reusable.update((b.key, b) for b in previous.blocks)
        # Streams that may be reused (models with state): the previous one and, if it did not
        # finish, the last one that did.
        self._bases = []
        if usable:
            finished = [s for s in previous._bases if s.sentences_done == len(s.starts)][:1]
            self._bases = [s for s in (previous.stream, *finished) if s is not None]
        if run:
            for _ in self.steps():
                pass

    # -- building ----------------------------------------------------------------------------
    def steps(self) -> Iterator[None]:
        """Do the analysis in bounded steps; ``complete`` is set after the last."""
        yield from self._tokenize()
        self.tokenized = True
        if self.model.sentence_independent:
            yield from self._score_blocks()
        else:
            yield from self._score_stream()
        self._flatten()
        self.complete = True
        self._reusable, self._bases = {}, []

    def _tokenize(self) -> Iterator[None]:
        state = ProseTokenizer.PLAIN
        budget = STEP_CHARS
        first = self.window_start
        for offset, block_text in blocks(self.text[first : first + self.max_chars]):
            offset += first
            old = self._reusable.get((block_text, state))
            if old is not None:
                block = old if old.start == offset else old.moved_to(offset)
            else:
                block = yield from Block.tokenized(offset, block_text, state, self.model)
                budget -= len(block_text)
            self.blocks.append(block)
            state = block.state_out
            if budget <= 0:
                budget = STEP_CHARS
                yield

    def _score_blocks(self) -> Iterator[None]:
        """Unscored blocks, STEP_TOKENS at a time: those in ``priority`` first, then in order."""
        todo = [b for b in self.blocks if b.stats is None]
        while todo:
            first = [b for b in todo if self._in_priority(b)] or todo
            batch, size = [], 0
            for block in first:
                batch.append(block)
                size += len(block.ids)
                if size >= STEP_TOKENS:
                    break
            self._score_batch(batch)
            chosen = set(map(id, batch))
            todo = [b for b in todo if id(b) not in chosen]
            if todo:
                yield

    def _in_priority(self, block: Block) -> bool:
        return self.priority is not None and block.start < self.priority[1] and block.start + len(block.text) > self.priority[0]

    def _score_batch(self, batch: list[Block]) -> None:
        if not batch:
            return
        logprob, rank, entropy = self.model.token_stats(np.concatenate([b.ids for b in batch]))
        at = 0
        for b in batch:
            n = len(b.ids)
            b.stats = (logprob[at : at + n], rank[at : at + n], entropy[at : at + n])
            at += n

    def _score_stream(self) -> Iterator[None]:
        ids = np.concatenate([b.ids for b in self.blocks]) if self.blocks else np.zeros(0, dtype=np.int64)
        stream = self.stream = Stream(ids)
        self._reuse_prefix(stream)
        if stream.states[stream.sentences_done] is None:
            stream.states[stream.sentences_done] = self.model.initial_state()
        # The base for the tail: a finished one, else one stopped part-way (whose tail may be
        # scored in part: overtaken analyses add up while the user types).
        bases = sorted(self._bases, key=lambda s: s.sentences_done < len(s.starts))
        tail = _suffix_base(stream, bases[0]) if bases else None
        total = len(stream.starts)
        step = 1  # inside the common tail, sentences between comparisons: 1, 2, 4, ...
        while stream.sentences_done < total:
            if tail is not None and (tail.agrees(self.model, stream) or tail.passed(stream)):
                tail = None  # copied as far as it was scored, or past that: the rest has no base
                continue
            k = stream.sentences_done
            in_tail = tail is not None and stream.starts[k] >= tail.begin
            within = max(1, int(np.searchsorted(stream.starts, stream.starts[k] + STEP_STREAM_TOKENS, side="right")) - k)
            count = min(step if in_tail else within, within, total - k)
            if tail is not None and not in_tail:  # stop at the tail, to compare from there
                count = max(1, min(count, int(np.searchsorted(stream.starts, tail.begin)) - k))
            start = int(stream.starts[k])
            end = int(stream.starts[k + count]) if k + count < total else len(ids)
            logprob, rank, entropy, after = self.model.token_stats_from(ids[start:end], stream.states[k])
            stream.logprob[start:end], stream.rank[start:end], stream.entropy[start:end] = logprob, rank, entropy
            stream.states[k + 1 : k + count + 1] = after
            stream.sentences_done = k + count
            if in_tail:
                step *= 2
            yield

    def _reuse_prefix(self, stream: Stream) -> None:
        """Copy the longest run of leading sentences some base scored with the same ids."""
        sentence_ends = np.append(stream.starts[1:], len(stream.ids))
        best, best_k = None, 0
        for base in self._bases:
            limit = min(len(stream.ids), base.done)
            differ = np.flatnonzero(stream.ids[:limit] != base.ids[:limit])
            same_until = int(differ[0]) if len(differ) else limit
            k = int(np.searchsorted(sentence_ends, same_until, side="right"))  # sentences wholly before it
            if k > best_k:
                best, best_k = base, k
        if best is not None:
            stream.states[0] = best.states[0]
            stream.copy_from(best, 0, 0, best_k, 0)

    # -- results -------------------------------------------------------------------------------
    def _flatten(self) -> None:
        self._fill(self.blocks, self._block_stats(0, len(self.blocks)))

    def _block_stats(self, i: int, j: int):
        """The full-stream ids and statistics of blocks ``i:j``."""
        chosen = self.blocks[i:j]
        if not chosen:
            return np.zeros(0, dtype=np.int64), (np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0))
        if self.stream is None:
            return np.concatenate([b.ids for b in chosen]), [np.concatenate([b.stats[k] for b in chosen]) for k in range(3)]
        at = self._stream_offsets()
        span = slice(at[i], at[j])
        return self.stream.ids[span], (self.stream.logprob[span], self.stream.rank[span], self.stream.entropy[span])

    def _stream_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([len(b.ids) for b in self.blocks])])

    def _fill(self, blocks_: list[Block], stream) -> None:
        """Document-wide arrays from the blocks' own (offsets relative to each block)."""
        sizes = np.array([len(b.starts) for b in blocks_], dtype=np.int64)
        shift = np.repeat(np.array([b.start for b in blocks_], dtype=np.int64), sizes)
        relative_starts = np.concatenate([b.starts for b in blocks_]) if blocks_ else np.zeros(0, dtype=np.int64)
        is_word = relative_starts >= 0
        self.starts = np.where(is_word, relative_starts + shift, -1)
        self.ends = np.where(is_word, (np.concatenate([b.ends for b in blocks_]) if blocks_ else relative_starts) + shift, -1)
        self.texts = list(itertools.chain.from_iterable(b.texts for b in blocks_))
        all_ids, stats = stream
        scored = all_ids != BOS_ID
        self.ids = all_ids[scored]
        self.logprob, self.rank, self.entropy = (s[scored] for s in stats)
        self.bits = -self.logprob * LOG2E
        self.oov = self.ids == UNK_ID
        self.words = np.flatnonzero(is_word)  # positions that are words, not </s>
        self._sentence_ends = np.flatnonzero(~is_word)  # the </s> of each sentence

    # -- the visible part before the whole ----------------------------------------------------
    def _block_span(self, start: int, end: int) -> tuple[int, int]:
        """Blocks ``i:j`` that overlap characters ``start:end``."""
        starts = [b.start for b in self.blocks]
        i = max(0, bisect.bisect_right(starts, start) - 1)
        if i < len(self.blocks) and self.blocks[i].start + len(self.blocks[i].text) <= start:
            i += 1
        return i, max(i, bisect.bisect_left(starts, end))

    def covers(self, start: int, end: int) -> bool:
        """Whether characters ``start:end`` are analysed already (all of them once complete,
        unless they lie outside the window of a document too large to analyse whole)."""
        if self.truncated and not (self.window_start <= start and end <= self.window_start + self.max_chars):
            return False
        if self.complete:
            return True
        if not self.tokenized:
            return False
        i, j = self._block_span(start, end)
        if self.stream is None:
            return self.model.sentence_independent and all(b.stats is not None for b in self.blocks[i:j])
        return self.stream.done >= self._stream_offsets()[j]

    def view(self, start: int, end: int) -> "DocumentAnalysis":
        """The tokens of the blocks overlapping ``start:end``, as an analysis of its own (for
        encoding what the editor shows; offsets stay the document's)."""
        if self.complete and start <= 0 and end >= len(self.text):
            return self
        i, j = self._block_span(start, end)
        part = object.__new__(DocumentAnalysis)
        part.model, part.text, part.complete, part.stream = self.model, self.text, False, None
        part._fill(self.blocks[i:j], self._block_stats(i, j))
        return part

    def approx_bytes(self) -> int:
        """Roughly what this analysis holds in memory (measured: about 600 bytes a token for
        the n-gram, plus the text; a model with state adds its state at every sentence start)."""
        tokens = sum(len(b.ids) for b in self.blocks)
        states = 0
        if self.stream is not None:
            first = next((x for x in self.stream.states if x is not None), None)
            states = _size_of(first) * len(self.stream.states)
        return 600 * tokens + 2 * min(len(self.text), self.max_chars) + states

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
        """The model state just before token ``index``: the state its sentence started in (for
        a model with state, as the document left it), then the sentence's earlier words."""
        sentence = int(np.searchsorted(self._sentence_ends, index))
        first = int(self._sentence_ends[sentence - 1]) + 1 if sentence > 0 else 0
        state = self.stream.states[sentence] if self.stream is not None else self.model.initial_state()
        return self.model.advance_many(state, self.ids[first:index])


@dataclass
class _SuffixBase:
    """A stream whose tail equals this stream's tail (same ids from ``begin`` on)."""

    base: Stream
    begin: int  # first position of this stream inside the common tail
    shift: int  # this stream's position minus the base's, inside the tail

    def _base_sentence(self, stream: Stream) -> int:
        return int(np.searchsorted(self.base.starts, int(stream.starts[stream.sentences_done]) - self.shift))

    def passed(self, stream: Stream) -> bool:
        """Whether the stream is inside the tail beyond what the base scored."""
        k = stream.sentences_done
        return k < len(stream.starts) and stream.starts[k] >= self.begin and self._base_sentence(stream) >= self.base.sentences_done

    def agrees(self, model: LanguageModel, stream: Stream) -> bool:
        """If the stream's next sentence starts inside the tail in a state that agrees with the
        base's at the same place, copy the base's scores from there on (as far as the base
        scored) and say so."""
        k = stream.sentences_done
        if k >= len(stream.starts) or stream.starts[k] < self.begin:
            return False
        at = int(stream.starts[k])
        other_k = self._base_sentence(stream)
        if other_k >= self.base.sentences_done or not model.states_agree(stream.states[k], self.base.states[other_k]):
            return False
        stream.copy_from(self.base, at, at - self.shift, self.base.sentences_done - other_k, other_k)
        return True


def _suffix_base(stream: Stream, base: Stream) -> _SuffixBase | None:
    n, m = len(stream.ids), len(base.ids)
    limit = min(n, m)
    if limit == 0:
        return None
    differ = np.flatnonzero(stream.ids[n - limit :][::-1] != base.ids[m - limit :][::-1])
    same = int(differ[0]) if len(differ) else limit
    if same == 0:
        return None
    # The tail must start at a sentence start in both (ids equal there, so both are <s>).
    k = int(np.searchsorted(stream.starts, n - same))
    begin = int(stream.starts[k]) if k < len(stream.starts) else n
    return _SuffixBase(base, begin, n - m)


def _size_of(state) -> int:
    """Bytes of the arrays (numpy or torch) inside a model state, one level down."""
    if isinstance(state, tuple):
        parts = state
    elif hasattr(state, "__slots__"):
        parts = [getattr(state, name, None) for name in state.__slots__]
    else:
        parts = getattr(state, "__dict__", {}).values()
    total = 0
    for part in parts:
        if hasattr(part, "nbytes"):
            total += int(part.nbytes)
        elif hasattr(part, "element_size"):
            total += int(part.element_size() * part.nelement())
        elif isinstance(part, tuple):
            total += _size_of(part)
    return total + 64
