"""Completion: the next word, or the rest of a half-typed word, ranked by the model.

Candidates for a prefix come from a sorted index of the vocabulary (a binary search gives the
run of words that start with it), not a scan. A lowercase prefix matches case-insensitively
("smartcase"). Completions keep the case the user typed: a capitalised prefix ("Kub") also offers
words the model knows only in lowercase, capitalised ("Kubernetes"), an all-capital one offers
them in capitals, and at the start of a sentence that takes a capital the next words are offered
capitalised ("The" where the model knows "the").
"""

from __future__ import annotations

import bisect
import functools
import math
import weakref
from dataclasses import dataclass
from typing import Callable, Collection

import numpy as np

from engine.distribution import top_k
from engine.model import LanguageModel
from engine.scripts import compile_classes, is_whole_unit
from engine.tokenizer import Token, tokenize
from engine.vocab import BOS_ID, EOS_ID, SPECIALS, UNK_ID, Vocabulary

_END = "\U0010ffff"


class PrefixIndex:
    """Completion's search of the words by prefix: a binary search in the words sorted as typed
    or case-folded (``Vocabulary.orders``, kept with the model), not a scan."""

    def __init__(self, vocab: Vocabulary):
        self._vocab = vocab
        self.word_ids = np.arange(len(SPECIALS), len(vocab), dtype=np.int64)  # (a Vocabulary holds the specials first, once)

    def warm(self) -> "PrefixIndex":
        """Have the sorted words, the list of words and their ids now (sorted here for a
        vocabulary kept without them; the list and the dict are made on first bulk use), and
        compile the script classes completion and detokenizing use (a language server does this
        before the first key, so no completion pays for them)."""
        self._vocab.orders
        self._vocab.tokens
        self._vocab.ids  # (a completion's context words looked up in the dict, not by binary search)
        compile_classes()
        return self

    @functools.cached_property
    def initial_case(self) -> tuple[np.ndarray, np.ndarray]:
        """Ids of the words that begin with a capital letter, and of those that begin with a
        lowercase one."""
        tokens = self._vocab.tokens
        first = [tokens[i][0] for i in self.word_ids.tolist()]
        upper = np.array([c.isupper() for c in first], dtype=bool)
        lower = np.array([c.islower() for c in first], dtype=bool)
        return self.word_ids[upper], self.word_ids[lower]

    def candidates(self, prefix: str) -> np.ndarray:
        """Ids of the words that start with ``prefix`` (all words for an empty prefix). A
        lowercase prefix matches case-insensitively."""
        if not prefix:
            return self.word_ids
        token, (exact, folded) = self._vocab.token, self._vocab.orders
        if prefix == prefix.lower():
            order, key = folded, (lambda i: token(i).lower())
        else:
            order, key = exact, token
        lo = bisect.bisect_left(order, prefix, key=key)
        hi = bisect.bisect_left(order, prefix + _END, lo, key=key)
        return order[lo:hi]


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


HISTORY_TOKENS = 2_000  # of the user's earlier text read into a state with memory (a cache holds 500)
VARIANTS = 3  # spellings of a word that can share a completion ("the", "The", "THE")


def cased_completions(model: LanguageModel, dist: np.ndarray, prefix: str, k: int,
                      capitalise: bool = False) -> list[tuple[str, float, int]]:
    """The ``k`` most probable completions of ``prefix`` in the case the user typed it: (text,
    log-probability, id of the word offered). For the next word where ``capitalise`` says a
    sentence starts with a capital, words the model knows only in lowercase are offered
    capitalised ("The"); a word it knows in both spellings keeps each with its own probability
    (a model that knows "The" and "the" has learned where each comes). A capitalised prefix
    offers the model's words spelt so first, as typed ("Miss"), and fills the places left with
    words it knows only in lowercase, capitalised ("Kub": "Kubernetes"). An all-capital prefix
    of two letters or more gives every word in capitals, spellings that come out the same as one
    completion, their probabilities added."""
    case = typed_case(prefix, capitalise)
    token, known = model.vocab.token, model.vocab
    exact = [(token(i), lp, i) for i, lp in top_completions(model, dist, prefix, k)] if case in (None, "title") else []
    if case is None or len(exact) == k:
        return exact
    merged: dict[str, tuple[float, int, float]] = {}  # text -> (log-probability, id, its own)
    for i, lp in top_completions(model, dist, prefix.lower(), VARIANTS * k):
        text = as_typed(token(i), case, known)
        if not text.startswith(prefix) or (exact and text == token(i)):  # (offered already)
            continue
        total, best, own = merged.get(text, (-math.inf, i, -math.inf))
        if token(i) == text or (token(best) != text and lp > own):
            best, own = i, lp
        merged[text] = (float(np.logaddexp(total, lp)), best, own)
    ranked = sorted(merged.items(), key=lambda item: -item[1][0])[: k - len(exact)]
    return exact + [(text, lp, i) for text, (lp, i, _) in ranked]


def shown_completions(model: LanguageModel, dist: np.ndarray, prefix: str, k: int, capitalise: bool = False,
                      passed: Collection[str] = ()) -> list[tuple[str, float, int]]:
    """The ``k`` completions shown for ``prefix`` (``cased_completions``), those the user typed on
    past at earlier keystrokes of the same word (``passed``: likely not the word meant) after the
    new ones, as Presage's selector does by default (REPEAT_SUGGESTIONS no, where it drops
    them): each keystroke brings other words to the top, and a passed word stays where room is."""
    ranked = cased_completions(model, dist, prefix, k + len(passed), capitalise)
    new = [offer for offer in ranked if offer[0] not in passed]
    return (new + [offer for offer in ranked if offer[0] in passed])[:k]


def typed_case(prefix: str, capitalise: bool) -> str | None:
    """How completions of ``prefix`` are spelt: "upper", "title", "sentence" (a sentence start
    that takes a capital, nothing typed yet), or None for the words as the model knows them (a
    lowercase prefix, or a mixed one such as "iPh")."""
    if len(prefix) >= 2 and prefix.isupper():
        return "upper"
    if prefix[:1].isupper() and prefix[1:] == prefix[1:].lower():
        return "title"
    return "sentence" if capitalise and not prefix else None


def as_typed(word: str, case: str | None, known=()) -> str:
    """``word`` in the case a prefix asked for; capitalised only when the model does not
    ``know`` its capitalised spelling too."""
    if case == "upper":
        return word.upper()
    if case in ("title", "sentence") and word[:1].islower():
        capitalised = word[0].upper() + word[1:]
        return word if capitalised in known else capitalised
    return word


def previous_case(previous: list[Token] | None) -> bool | None:
    """Whether the sentence ``previous`` began with a capital letter (None: no letter to say)."""
    first = next((t.text for t in previous or [] if t.text[0].isalpha()), None)
    return None if first is None else first[0].isupper()


def takes_capital(model: LanguageModel, dist: np.ndarray, previous: list[Token] | None) -> bool:
    """Whether a sentence starting here begins with a capital: as the text's previous sentence
    does, or, with none before it, as the model expects (more probability on words that begin
    with a capital than on words that begin in lowercase: not so for a lowercased corpus)."""
    written = previous_case(previous)
    if written is not None:
        return written
    upper, lower = prefix_index(model).initial_case
    p = np.exp(dist)
    return float(p[upper].sum()) > float(p[lower].sum())


@dataclass
class Prediction:
    context: list[Token]
    prefix: str
    predictions: list[tuple[str, float]]  # (token, natural log-probability)


def state_after(model: LanguageModel, sentences: list[list[Token]], open_sentence: bool = True, start=None):
    """The model state after ``sentences`` read from ``start`` (by default the initial state);
    the last one is left open (no ``</s>``)."""
    get = model.vocab.get
    ids: list[int] = []
    for n, sentence in enumerate(sentences):
        ids.extend(get(token.text, UNK_ID) for token in sentence)
        if sentence and (n < len(sentences) - 1 or not open_sentence):
            ids.append(EOS_ID)
    return model.advance_many(model.initial_state() if start is None else start, ids)


def state_after_history(model: LanguageModel, sentences: list[list[Token]]):
    """The state a model with memory (a cache, a recurrent network) starts a document in after
    the user's earlier text ``sentences``: its last whole sentences of at least HISTORY_TOKENS
    tokens read. A model whose sentences start afresh starts in its initial state."""
    if model.sentence_independent or not sentences:
        return model.initial_state()
    held, start = 0, len(sentences)
    while start > 0 and held < HISTORY_TOKENS:
        start -= 1
        held += len(sentences[start]) + 1
    return state_after(model, sentences[start:], open_sentence=False)


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


@dataclass
class Cursor:
    """The text before the cursor as completion reads it: its sentences, the partial word being
    typed and the model's state before that word."""

    sentences: list[list[Token]]
    prefix: str
    open_sentence: bool  # the last sentence has not ended
    state: object

    @property
    def context(self) -> list[Token]:
        """The words of the sentence being written (none at a sentence start)."""
        return self.sentences[-1] if self.sentences and self.open_sentence else []

    def takes_capital(self, model: LanguageModel, dist: np.ndarray | None = None) -> bool:
        """Whether the word at the cursor starts a sentence that begins with a capital
        (``dist``: the model's distribution there, computed only if it is needed and not given)."""
        if self.context:
            return False
        previous = next((s for s in reversed(self.sentences) if s), None)
        if dist is None and previous_case(previous) is None:
            dist = model.next_logprobs(self.state)
        return takes_capital(model, dist, previous)


def at_cursor(model: LanguageModel, text: str, start=None) -> Cursor:
    """The ``Cursor`` at the end of ``text``, read from state ``start`` (by default the initial one)."""
    sentences, prefix = split_prefix(text)
    open_sentence = bool(sentences) and not _ended(text, sentences)
    return Cursor(sentences, prefix, open_sentence, state_after(model, sentences, open_sentence=open_sentence, start=start))


def predict(model: LanguageModel, text: str, k: int = 10, start=None, passed: Callable[[str], Collection[str]] | None = None) -> Prediction:
    """Next words after ``text`` (if it ends in whitespace) or completions of its last word;
    ``start``: the state before ``text`` (``state_after_history``); ``passed(prefix)``: the
    words offered at earlier keystrokes of the word being typed (``shown_completions``)."""
    cursor = at_cursor(model, text, start)
    dist = model.next_logprobs(cursor.state)
    ranked = shown_completions(model, dist, cursor.prefix, k, cursor.takes_capital(model, dist), passed(cursor.prefix) if passed else ())
    return Prediction(cursor.context, cursor.prefix, [(word, lp) for word, lp, _ in ranked])


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
        best = cased_completions(model, model.next_logprobs(state), prefix, 1)
        if not best or math.exp(best[0][1]) < min_probability or best[0][0] == prefix:
            return []
        ids.append(best[0][2])
        state = model.advance(state, best[0][2])
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
