"""Scores derived once for every backend from its two primitives: per-token log-probability,
surprisal in bits, rank and entropy (from the full distribution), and perplexity with KenLM's
conventions (``</s>`` scored and counted, OOVs scored as ``<unk>`` and reported apart)."""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from itertools import chain, islice, repeat
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine.compiled import ALLOWED, tsv
from engine.distribution import LOG2E
from engine.model import LanguageModel
from engine.parallel import ordered_map, thread_map
from engine.tokenizer import SentenceColumns, Token, pretokenized_columns, pretokenized_words
from engine.token_lines import TokenLines, joined_tokens
from engine.vocab import BOS_ID, EOS, EOS_ID, NEWLINE, UNK_ID, Vocabulary, sentences_of_lines

USE_COMPILED = tsv is not None and ALLOWED  # (else Python splits pretokenized lines)
BATCH_TOKENS = 100_000  # tokens scored at once: memory follows this, not the text


@dataclass
class TokenScore:
    token: str
    start: int | None
    end: int | None
    logprob: float
    surprisal_bits: float
    rank: int
    entropy_bits: float
    oov: bool

    def as_dict(self) -> dict:
        return {"token": self.token, "start": self.start, "end": self.end, "logprob": self.logprob, "surprisal_bits": self.surprisal_bits,
                "rank": self.rank, "entropy_bits": self.entropy_bits, "oov": self.oov}


@dataclass
class Perplexity:
    sentences: int = 0
    tokens: int = 0
    oov: int = 0
    log10_prob: float = 0.0
    log10_prob_oov: float = 0.0

    def add(self, other: "Perplexity") -> None:
        for key in ("sentences", "tokens", "oov", "log10_prob", "log10_prob_oov"):
            setattr(self, key, getattr(self, key) + getattr(other, key))

    @property
    def perplexity(self) -> float:
        return 10 ** (-self.log10_prob / self.tokens) if self.tokens else float("nan")

    @property
    def perplexity_excluding_oov(self) -> float:
        n = self.tokens - self.oov
        return 10 ** (-(self.log10_prob - self.log10_prob_oov) / n) if n else float("nan")

    @property
    def cross_entropy_bits(self) -> float:
        return -self.log10_prob * math.log2(10) / self.tokens if self.tokens else float("nan")

    def as_dict(self) -> dict:
        return {
            "sentences": self.sentences,
            "tokens": self.tokens,
            "oov": self.oov,
            "log10_prob": self.log10_prob,
            "cross_entropy_bits": self.cross_entropy_bits,
            "perplexity": self.perplexity,
            "perplexity_excluding_oov": self.perplexity_excluding_oov,
        }


def encode(model: LanguageModel, sentences: Iterable[list[Token]]) -> np.ndarray:
    """Sentences as one id stream ``<s> w1 ... wn </s> <s> ...``."""
    return encode_words(model.vocab, ([t.text for t in sentence] for sentence in sentences))


def encode_lines(vocab: Vocabulary, block: str) -> tuple[np.ndarray, np.ndarray]:
    """Whole lines of pretokenized text (one sentence a line, tokens between runs of spaces or
    tabs, as KenLM reads them) as the id stream ``encode`` gives, and where each sentence ends
    in it; split and looked up in bulk, with no token objects (the perplexity fast path)."""
    return _encode_line_words(vocab, pretokenized_words(block))


def _encode_line_words(vocab: Vocabulary, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``encode_lines`` of the words of whole lines, each line's end a "\\n"."""
    return sentences_of_lines(np.fromiter(map(vocab.line_ids.get, words, repeat(UNK_ID)), dtype=np.int64, count=len(words)))


def encode_words(vocab: Vocabulary, sentences: Iterable[list[str]]) -> np.ndarray:
    """``encode`` for sentences given as lists of strings."""
    ids: list[int] = []
    get = vocab.ids.get
    for sentence in sentences:
        ids.append(BOS_ID)
        ids += map(get, sentence, repeat(UNK_ID))
        ids.append(EOS_ID)
    return np.array(ids, dtype=np.int64)


def id_batches(blocks: Iterable[tuple[np.ndarray, np.ndarray]], max_tokens: int = BATCH_TOKENS) -> Iterator[tuple[np.ndarray, int]]:
    """Id streams of whole sentences (with where each ends, as ``encode_lines`` gives them)
    regrouped into exactly the batches ``sentence_batches`` makes of the same sentences, so a
    model with state scores them alike; each batch with its number of sentences."""
    carry: list[np.ndarray] = []
    carry_size = carry_sentences = 0
    for ids, ends in blocks:
        cumulative = carry_size + np.cumsum(np.diff(ends, prepend=0) - 1)  # words and </s> counted
        start = base = first = 0
        while (i := int(np.searchsorted(cumulative, base + max_tokens))) < len(cumulative):
            yield np.concatenate(carry + [ids[start : ends[i]]]), carry_sentences + i + 1 - first
            carry, carry_sentences = [], 0
            start, base, first = int(ends[i]), int(cumulative[i]), i + 1
        if start < len(ids):
            carry.append(ids[start:])
            carry_size, carry_sentences = int(cumulative[-1] - base), carry_sentences + len(ends) - first
        else:
            carry_size = 0
    if carry:
        yield np.concatenate(carry), carry_sentences


def perplexity(model: LanguageModel, sentences: Iterable[list[Token]]) -> Perplexity:
    """Corpus perplexity via the backend's one-pass sequence scorer, in bounded batches."""
    return perplexity_of_words(model, ([t.text for t in sentence] for sentence in sentences))


def perplexity_of_words(model: LanguageModel, sentences: Iterable[list[str]]) -> Perplexity:
    """``perplexity`` of sentences given as their words (``iter_words``: no token objects)."""
    return perplexity_of_ids(model, ((encode_words(model.vocab, batch), len(batch)) for batch in sentence_batches(sentences)))


def perplexity_of_ids(model: LanguageModel, batches: Iterable[tuple[np.ndarray, int]]) -> Perplexity:
    """``perplexity`` of id streams already made, each with its number of sentences. A text of
    several batches is scored on two forked processes while this one reads the next batches
    (engine.parallel): reading and scoring took about as long as each other, one after the other."""
    total = Perplexity()
    for result in ordered_map(_perplexity_batch, batches, model):
        total.add(result)
    return total


def _perplexity_batch(model: LanguageModel, batch: tuple[np.ndarray, int]) -> Perplexity:
    ids, sentences = batch
    scored = ids != BOS_ID
    log10 = model.score_ids(ids)[scored] / math.log(10)
    oov = ids[scored] == UNK_ID
    return Perplexity(
        sentences=sentences,
        tokens=int(scored.sum()),
        oov=int(oov.sum()),
        log10_prob=float(log10.sum()),
        log10_prob_oov=float(log10[oov].sum()),
    )


def sentence_batches(sentences: Iterable, max_tokens: int | None = None, length=len) -> Iterator[list]:
    """Consecutive sentences in batches of about ``max_tokens`` (BATCH_TOKENS) tokens (``</s>``
    counted); a sentence's tokens are ``length(sentence)``."""
    max_tokens = max_tokens or BATCH_TOKENS
    batch: list = []
    size = 0
    for sentence in sentences:
        batch.append(sentence)
        size += length(sentence) + 1
        if size >= max_tokens:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def score_tokens(model: LanguageModel, sentences: Iterable[list[Token]]) -> list[TokenScore]:
    """Every token of every sentence plus each ``</s>``: log-probability, surprisal, rank and
    entropy of the distribution it was drawn from."""
    return list(stream_scores(model, sentences))


@dataclass
class ScoredBatch:
    """A batch of sentences scored: one entry per token and per ``</s>`` (whose offsets are -1)."""

    tokens: Sequence[str]  # (a list, or TokenLines)
    starts: np.ndarray
    ends: np.ndarray
    logprob: np.ndarray
    rank: np.ndarray
    entropy_bits: np.ndarray
    oov: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def surprisal_bits(self) -> np.ndarray:
        return -self.logprob * LOG2E


Columns = tuple[Sequence[str], np.ndarray, np.ndarray]  # a batch's tokens (``</s>`` included; a list, or TokenLines), starts and ends


def token_batches(vocab: Vocabulary, sentences: Iterable[SentenceColumns], max_tokens: int | None = None) -> Iterator[tuple[np.ndarray, Columns]]:
    """Sentences given as columns (``iter_columns``) in batches (``sentence_batches``), each as
    its id stream and its columns."""
    for batch in sentence_batches(sentences, max_tokens, length=lambda columns: len(columns[0])):
        yield sentence_rows(vocab, batch)


def sentence_rows(vocab: Vocabulary, sentences: list[SentenceColumns]) -> tuple[np.ndarray, Columns]:
    """Sentences given as columns: their id stream, and their columns joined with a ``</s>``
    row (offsets -1) after each sentence."""
    def column(i, end):
        return chain.from_iterable(chain(sentence[i], (end,)) for sentence in sentences)

    rows = sum(len(sentence[0]) + 1 for sentence in sentences)
    return encode_words(vocab, (sentence[0] for sentence in sentences)), (
        list(column(0, EOS)), np.fromiter(column(1, -1), dtype=np.int64, count=rows), np.fromiter(column(2, -1), dtype=np.int64, count=rows))


def pretokenized_batches(vocab: Vocabulary, blocks: Iterable[str], max_tokens: int | None = None) -> Iterator[tuple[np.ndarray, Columns]]:
    """``token_batches`` of pretokenized text given in pieces of whole lines (the same
    batches), split and looked up in bulk with no token objects: a table of 400,000 tokens
    spent most of its time in this process making and reading those objects."""
    pending: collections.deque = collections.deque()  # columns read, not yet handed out

    words_table = vocab.utf8_words if USE_COMPILED else None  # (in C: the same columns and ids, no string a token)

    def encoded():
        offset = 0
        for block in blocks:
            read = None
            if words_table is not None and "\r" not in block:
                read = tsv.columns(block, offset, words_table, UNK_ID, NEWLINE, EOS.encode())
            if read is not None:
                text, *numbers = read
                token_ends, starts, ends, line_ids = (np.frombuffer(column, dtype=np.int64) for column in numbers)
                tokens = TokenLines(text, token_ends)
                ids = sentences_of_lines(line_ids)
            else:
                words, starts, ends = pretokenized_columns(block, offset)
                tokens = list(words)
                for line_end in np.flatnonzero(starts < 0).tolist():  # (a line's end is its "\n", a row </s>)
                    tokens[line_end] = EOS
                ids = _encode_line_words(vocab, words)
            offset += len(block)
            pending.append((tokens, starts, ends))
            yield ids

    for ids, sentences in id_batches(encoded(), max_tokens or BATCH_TOKENS):
        yield ids, _take_columns(pending, len(ids) - sentences)  # a row for every id but <s>


def _take_columns(pending: collections.deque, rows: int) -> Columns:
    """The next ``rows`` rows of the columns in ``pending``, joined across its pieces."""
    parts = []
    while rows:
        words, starts, ends = pending[0]
        if len(words) <= rows:
            parts.append(pending.popleft())
            rows -= len(words)
        else:
            parts.append((words[:rows], starts[:rows], ends[:rows]))
            pending[0] = (words[rows:], starts[rows:], ends[rows:])
            rows = 0
    if len(parts) == 1:
        return parts[0]
    return joined_tokens([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def scored_batches(model: LanguageModel, batches: Iterable[tuple[np.ndarray, Columns]]) -> Iterator[ScoredBatch]:
    """Every token scored, a batch of sentences at a time (bounded memory for a stream of any
    length), from ``token_batches`` or ``pretokenized_batches``. A model with state starts each
    batch afresh, as ``perplexity`` does, so the two agree token for token. A text of several
    batches is ranked beside this thread, which reads the next batches while the caller writes
    the last (engine.parallel): on one more thread where the model ranks on both cores itself,
    else on two forked processes."""
    batches = iter(batches)
    head: collections.deque = collections.deque()
    beside = thread_map if model.token_stats_in_parallel() else ordered_map
    if beside is ordered_map:  # (forks where there are two batches: what a model builds on first use, such as the n-gram's unigram summary, built once before)
        head.extend(islice(batches, 2))
        if len(head) > 1:
            ids = head[0][0]
            model.token_stats(ids[: np.flatnonzero(ids == EOS_ID)[0] + 1])
    waiting: collections.deque = collections.deque()  # (read and sent to be ranked: at most two batches)

    def jobs():
        for ids, columns in chain((head.popleft() for _ in range(len(head))), batches):
            waiting.append((ids, columns))
            yield ids

    for logprob, rank, entropy in beside(_token_stats, jobs(), model, ahead=1):
        ids, (tokens, starts, ends) = waiting.popleft()
        scored = ids != BOS_ID
        yield ScoredBatch(tokens, starts, ends, logprob[scored], rank[scored], entropy[scored], ids[scored] == UNK_ID)


def _token_stats(model: LanguageModel, ids: np.ndarray):
    return model.token_stats(ids)


def stream_scores(model: LanguageModel, sentences: Iterable[list[Token]]) -> Iterator[TokenScore]:
    """``score_tokens`` one token at a time, in bounded memory."""
    columns = (([t.text for t in s], [t.start for t in s], [t.end for t in s]) for s in sentences)
    for b in scored_batches(model, token_batches(model.vocab, columns)):
        for token, start, end, logprob, rank, entropy, oov in zip(b.tokens, b.starts.tolist(), b.ends.tolist(), b.logprob.tolist(), b.rank.tolist(), b.entropy_bits.tolist(), b.oov.tolist()):
            yield TokenScore(token, None if start < 0 else start, None if end < 0 else end, logprob, -logprob * LOG2E, rank, entropy, oov)


def perplexity_of_scores(scores: list[TokenScore]) -> float:
    """2 to the mean surprisal in bits (equal to KenLM's 10^(-sum log10 / tokens))."""
    return perplexity_of_bits(sum(s.surprisal_bits for s in scores), len(scores))


def perplexity_of_bits(bits: float, tokens: int) -> float:
    """2 to the mean of ``bits`` over ``tokens`` (NaN for none)."""
    return 2 ** (bits / tokens) if tokens else float("nan")
