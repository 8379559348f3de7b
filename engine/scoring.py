"""Scores derived once for every backend from its two primitives: per-token log-probability,
surprisal in bits, rank and entropy (from the full distribution), and perplexity with KenLM's
conventions (``</s>`` scored and counted, OOVs scored as ``<unk>`` and reported apart)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from engine.distribution import LOG2E
from engine.model import LanguageModel
from engine.tokenizer import Token
from engine.vocab import BOS_ID, EOS, EOS_ID, UNK_ID


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
    ids: list[int] = []
    get = model.vocab.ids.get
    for sentence in sentences:
        ids.append(BOS_ID)
        ids.extend(get(t.text, UNK_ID) for t in sentence)
        ids.append(EOS_ID)
    return np.array(ids, dtype=np.int64)


def perplexity(model: LanguageModel, sentences: Iterable[list[Token]]) -> Perplexity:
    """Corpus perplexity via the backend's one-pass sequence scorer, in bounded batches."""
    total = Perplexity()
    for batch in sentence_batches(sentences):
        total.add(_perplexity_batch(model, batch))
    return total


def _perplexity_batch(model: LanguageModel, sentences: list[list[Token]]) -> Perplexity:
    ids = encode(model, sentences)
    scored = ids != BOS_ID
    log10 = model.score_ids(ids)[scored] / math.log(10)
    oov = ids[scored] == UNK_ID
    return Perplexity(
        sentences=len(sentences),
        tokens=int(scored.sum()),
        oov=int(oov.sum()),
        log10_prob=float(log10.sum()),
        log10_prob_oov=float(log10[oov].sum()),
    )


BATCH_TOKENS = 100_000  # tokens scored at once: memory follows this, not the text


def sentence_batches(sentences: Iterable[list[Token]], max_tokens: int = BATCH_TOKENS) -> Iterator[list[list[Token]]]:
    """Consecutive sentences in batches of about ``max_tokens`` tokens (``</s>`` counted)."""
    batch: list[list[Token]] = []
    size = 0
    for sentence in sentences:
        batch.append(sentence)
        size += len(sentence) + 1
        if size >= max_tokens:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def score_tokens(model: LanguageModel, sentences: Iterable[list[Token]]) -> list[TokenScore]:
    """Every token of every sentence plus each ``</s>``: log-probability, surprisal, rank and
    entropy of the distribution it was drawn from."""
    return list(stream_scores(model, sentences))


def stream_scores(model: LanguageModel, sentences: Iterable[list[Token]]) -> Iterator[TokenScore]:
    """``score_tokens`` a batch of sentences at a time, so a stream of any length is scored in
    bounded memory. A model with state starts each batch afresh, as ``perplexity`` does, so the
    two agree token for token."""
    for batch in sentence_batches(sentences):
        ids = encode(model, batch)
        logprob, rank, entropy = model.token_stats(ids)
        tokens = [t for sentence in batch for t in (*sentence, None)]
        for i, token in zip(np.flatnonzero(ids != BOS_ID), tokens):
            yield TokenScore(
                token=EOS if token is None else token.text,
                start=None if token is None else token.start,
                end=None if token is None else token.end,
                logprob=float(logprob[i]),
                surprisal_bits=float(-logprob[i] * LOG2E),
                rank=int(rank[i]),
                entropy_bits=float(entropy[i]),
                oov=bool(ids[i] == UNK_ID),
            )


def perplexity_of_scores(scores: list[TokenScore]) -> float:
    """2 to the mean surprisal in bits (equal to KenLM's 10^(-sum log10 / tokens))."""
    return perplexity_of_bits(sum(s.surprisal_bits for s in scores), len(scores))


def perplexity_of_bits(bits: float, tokens: int) -> float:
    """2 to the mean of ``bits`` over ``tokens`` (NaN for none)."""
    return 2 ** (bits / tokens) if tokens else float("nan")
