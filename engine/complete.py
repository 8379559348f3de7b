"""Completion: the next word, or the rest of a half-typed word, ranked by the model.

Candidates for a prefix come from a sorted index of the vocabulary (a binary search gives the
run of words that start with it), not a scan. A lowercase prefix matches case-insensitively
("smartcase"); a prefix with capitals matches exactly.
"""

from __future__ import annotations

import bisect
import functools
import math
import weakref
from dataclasses import dataclass

import numpy as np

from engine.distribution import top_k
from engine.model import LanguageModel
from engine.scripts import is_whole_unit
from engine.tokenizer import Token, tokenize
from engine.vocab import BOS_ID, EOS_ID, SPECIALS, UNK_ID, Vocabulary

_END = "\U0010ffff"


class PrefixIndex:
    """Words sorted as typed and case-folded, each sorted on first use: a next-word prediction
    needs neither (sorting a 90,000-word vocabulary twice cost every predict 120 ms)."""

    def __init__(self, vocab: Vocabulary):
        self._tokens = vocab.tokens
        self.word_ids = np.array([i for i, t in enumerate(self._tokens) if t not in SPECIALS], dtype=np.int64)

    @functools.cached_property
    def _exact(self) -> tuple[list[str], np.ndarray]:
        tokens = self._tokens
        exact = sorted(self.word_ids.tolist(), key=tokens.__getitem__)
        return [tokens[i] for i in exact], np.array(exact, dtype=np.int64)

    @functools.cached_property
    def _folded(self) -> tuple[list[str], np.ndarray]:
        lowered = [t.lower() for t in self._tokens]  # a stable sort: equal folded words keep id order
        folded = sorted(self.word_ids.tolist(), key=lowered.__getitem__)
        return [lowered[i] for i in folded], np.array(folded, dtype=np.int64)

    def warm(self) -> "PrefixIndex":
        """Sort both views now (a language server does this before the first key, so no
        completion pays for it)."""
        self._exact, self._folded
        return self

    def candidates(self, prefix: str) -> np.ndarray:
        """Ids of the words that start with ``prefix`` (all words for an empty prefix)."""
        if not prefix:
            return self.word_ids
        keys, ids = self._folded if prefix == prefix.lower() else self._exact
        lo = bisect.bisect_left(keys, prefix)
        hi = bisect.bisect_left(keys, prefix + _END, lo)
        return ids[lo:hi]


_indexes: "weakref.WeakKeyDictionary[LanguageModel, PrefixIndex]" = weakref.WeakKeyDictionary()


def prefix_index(model: LanguageModel) -> PrefixIndex:
    """The model's index, built once and dropped with the model."""
    index = _indexes.get(model)
    if index is None:
        index = _indexes[model] = PrefixIndex(model.vocab)
    return index


def top_completions(model: LanguageModel, dist: np.ndarray, prefix: str, k: int) -> list[tuple[int, float]]:
    """The ``k`` most probable words that start with ``prefix``: (id, log-probability)."""
    ids = prefix_index(model).candidates(prefix)
    if len(ids) == 0 or k <= 0:
        return []
    ids, scores = top_k(dist[ids], k, ids)
    return [(int(i), float(score)) for i, score in zip(ids, scores)]


@dataclass
class Prediction:
    context: list[Token]
    prefix: str
    predictions: list[tuple[str, float]]  # (token, natural log-probability)


def state_after(model: LanguageModel, sentences: list[list[Token]], open_sentence: bool = True):
    """The model state after ``sentences``; the last one is left open (no ``</s>``)."""
    get = model.vocab.ids.get
    ids: list[int] = []
    for n, sentence in enumerate(sentences):
        ids.extend(get(token.text, UNK_ID) for token in sentence)
        if n < len(sentences) - 1 or not open_sentence:
            ids.append(EOS_ID)
    return model.advance_many(model.initial_state(), ids)


def split_prefix(text: str) -> tuple[list[list[Token]], str]:
    """The sentences before the cursor at the end of ``text`` and the partial word being typed.
    A character of Chinese or Japanese (or a whole Thai cluster) is never partial: what follows
    it is the next unit."""
    sentences = tokenize(text)
    prefix = ""
    if sentences and sentences[-1] and text and not text[-1].isspace():
        last = sentences[-1][-1]
        if last.end == len(text) and last.text[0].isalnum() and not is_whole_unit(last.text):
            prefix = last.text
            sentences[-1] = sentences[-1][:-1]
    return sentences, prefix


def predict(model: LanguageModel, text: str, k: int = 10) -> Prediction:
    """Next words after ``text`` (if it ends in whitespace) or completions of its last word."""
    sentences, prefix = split_prefix(text)
    open_sentence = bool(sentences) and not _ended(text, sentences)
    state = state_after(model, sentences, open_sentence=open_sentence)
    dist = model.next_logprobs(state)
    ranked = top_completions(model, dist, prefix, k)
    context = sentences[-1] if sentences and open_sentence else []
    return Prediction(context, prefix, [(model.vocab.tokens[i], lp) for i, lp in ranked])


PHRASE_WORDS = 4  # words an inline continuation adds after the one being typed
PHRASE_MIN_PROBABILITY = 0.05  # it stops before a word the model is less sure of than this


def greedy_phrase(model: LanguageModel, state, prefix: str, max_words: int = PHRASE_WORDS,
                  min_probability: float = PHRASE_MIN_PROBABILITY, expected: list[int] | None = None) -> list[int]:
    """The inline (ghost-text) continuation as word ids: the most probable completion of the
    half-typed ``prefix`` (if any), then the most probable next words until one is less likely
    than ``min_probability`` or the sentence ends. Empty when the completion is too unsure or is
    the prefix itself. With ``expected`` (the words that really follow), it stops at the first
    word that differs from them: such a phrase is wrong, and the caller need not see the rest."""
    ids: list[int] = []
    if prefix:
        best = top_completions(model, model.next_logprobs(state), prefix, 1)
        if not best or math.exp(best[0][1]) < min_probability or model.vocab.tokens[best[0][0]] == prefix:
            return []
        ids.append(best[0][0])
        state = model.advance(state, best[0][0])
    while len(ids) < max_words + bool(prefix) and (expected is None or ids == expected[: len(ids)]):
        dist = model.next_logprobs(state).copy()
        dist[[UNK_ID, BOS_ID]] = -np.inf
        best = int(np.argmax(dist))
        if best == EOS_ID or math.exp(dist[best]) < min_probability:
            break
        ids.append(best)
        state = model.advance(state, best)
    return ids


SENTENCE_ENDS = {".", "!", "?", "...", "…"}


def _ended(text: str, sentences: list[list[Token]]) -> bool:
    """Whether the text before the cursor closes its last sentence. The tokenizer cuts a
    sentence only once the next one starts, so look at the last token and what follows it:
    a sentence end then whitespace, or a blank line."""
    last = sentences[-1]
    if not last:
        return True
    tail = text[last[-1].end :]
    if "\n\n" in tail:
        return True
    return last[-1].text in SENTENCE_ENDS and tail != "" and tail.isspace()
