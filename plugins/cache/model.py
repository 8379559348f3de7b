"""A cache language model (Kuhn and De Mori 1990): words just written are likely to come again.

    P(w | history) = (1 - floor) * count of w in the last ``size`` tokens / tokens remembered
                     + floor * P_unigram(w)

``P_unigram`` is the training text's add-one unigram distribution, so every word keeps some
probability and the distribution is proper before anything is remembered. The history runs on
across sentence ends (and, in an editor, through the whole document). Alone it is a weak model;
interpolated with an n-gram or recurrent model (``foretell mix``) it predicts the names and terms
of the document at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import ModelFormatError
from engine.model import LanguageModel, option
from engine.vocab import BOS_ID, Vocabulary

UNIGRAMS = "unigrams.npy"


@dataclass
class CacheOptions:
    size: int = option(500, "tokens remembered")
    floor: float = option(0.2, "share of the unigram distribution, in (0, 1]")

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"size must be at least 1, not {self.size}")
        if not 0 < self.floor <= 1:
            raise ValueError(f"floor must be in (0, 1], not {self.floor}")


class CacheModel(LanguageModel):
    """Cache (recency) model over the last tokens, backed off to unigrams (Kuhn and De Mori 1990)."""

    name = "cache"
    Options = CacheOptions

    def __init__(self, vocab: Vocabulary, options: CacheOptions, unigram_counts: np.ndarray):
        super().__init__(vocab, options)
        counts = np.asarray(unigram_counts, dtype=np.float64).copy()
        counts[BOS_ID] = 0
        self.counts = counts
        smoothed = counts + 1
        smoothed[BOS_ID] = 0
        self.unigram = smoothed / smoothed.sum()

    @classmethod
    def fit(cls, corpus, options, progress=None, workdir=None):
        counts = np.zeros(len(corpus.vocab), dtype=np.int64)
        ids = corpus.ids
        for start in range(0, len(ids), 1 << 22):
            counts += np.bincount(np.asarray(ids[start : start + (1 << 22)]), minlength=len(counts))
        return cls(corpus.vocab, options, counts)

    def save(self, folder: Path) -> dict:
        np.save(folder / UNIGRAMS, self.counts.astype(np.int64), allow_pickle=False)
        return {}

    @classmethod
    def load(cls, folder: Path, vocab: Vocabulary, options, facts: dict):
        try:
            counts = np.load(folder / UNIGRAMS, allow_pickle=False)
        except FileNotFoundError:
            raise ModelFormatError(f"{folder.name}: {UNIGRAMS} is missing") from None
        except (ValueError, OSError, EOFError):
            raise ModelFormatError(f"{folder.name}: {UNIGRAMS} is corrupt or not a numpy array") from None
        if counts.shape != (len(vocab),) or counts.dtype != np.int64:
            raise ModelFormatError(f"{folder.name}: {UNIGRAMS} does not match the vocabulary")
        return cls(vocab, options, counts)

    # -- scoring -----------------------------------------------------------------------------
    def score_ids(self, ids: np.ndarray) -> np.ndarray:
        """Every position at once: how often its word occurred among the ``size`` scored tokens
        before it, from one sort of (word, position) pairs."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.full(len(ids), np.nan)
        scored = np.flatnonzero(ids != BOS_ID)
        words = ids[scored]
        j = np.arange(len(words), dtype=np.int64)
        keys = words * (len(words) + 1) + j  # sorted: by word, then position
        order = np.sort(keys)
        here = np.searchsorted(order, keys)  # occurrences of the word before position j, plus the others before it
        window_start = words * (len(words) + 1) + np.maximum(j - self.options.size, 0)
        recent = here - np.searchsorted(order, window_start)
        remembered = np.minimum(j, self.options.size)
        cache = np.divide(recent, remembered, out=np.zeros(len(words)), where=remembered > 0)
        weight = np.where(remembered > 0, 1 - self.options.floor, 0.0)
        out[scored] = np.log(weight * cache + (1 - weight) * self.unigram[words])
        return out

    def initial_state(self):
        return ()

    def advance(self, state, token_id: int):
        return (state + (int(token_id),))[-self.options.size :]

    def next_logprobs(self, state) -> np.ndarray:
        if not state:
            p = self.unigram.copy()
        else:
            cache = np.bincount(np.asarray(state, dtype=np.int64), minlength=len(self.vocab)) / len(state)
            p = (1 - self.options.floor) * cache + self.options.floor * self.unigram
        with np.errstate(divide="ignore"):
            dist = np.log(p)
        dist[BOS_ID] = -np.inf
        return dist

    def describe(self) -> dict:
        return {"size": self.options.size, "floor": self.options.floor, "training_tokens": int(self.counts.sum())}
