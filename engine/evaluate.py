"""How well a model would serve someone typing: perplexity, next-word top-1/top-5 accuracy and
keystroke savings from a simulated typist who accepts a correct completion with one keystroke.

Keystroke savings come under two conventions. Ours counts the characters of the words only;
with phrases, the inline continuation an editor shows (engine.complete.greedy_phrase) is offered
too, and one keystroke accepts it when all of it is right.
Presage's (its simulator's, and most published figures'; "autospace") counts words only, each
with the space after it: accepting a completion inserts the word and its space, so the space is
saved too, while a word typed out costs its letters and the space. Punctuation is left out of
it, as Presage's simulator leaves it out of the text it types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.complete import greedy_phrase, shown_completions, state_after_history, takes_capital
from engine.model import LanguageModel
from engine.distribution import rank_and_entropy
from engine.tokenizer import Token
from engine.vocab import EOS_ID, UNK_ID


@dataclass
class Evaluation:
    tokens: int = 0
    top1: int = 0
    top5: int = 0
    log_prob: float = 0.0
    characters: int = 0
    keystrokes: int = 0
    autospace_characters: int = 0
    autospace_keystrokes: int = 0
    phrase_keystrokes: int = 0
    autospace_phrase_keystrokes: int = 0

    def as_dict(self) -> dict:
        import math

        return {
            "perplexity": math.exp(-self.log_prob / self.tokens) if self.tokens else float("nan"),
            "top1_accuracy": self.top1 / self.tokens if self.tokens else 0.0,
            "top5_accuracy": self.top5 / self.tokens if self.tokens else 0.0,
            "keystroke_savings": 1 - self.keystrokes / self.characters if self.characters else 0.0,
            "keystroke_savings_autospace": 1 - self.autospace_keystrokes / self.autospace_characters if self.autospace_characters else 0.0,
            "keystroke_savings_phrases": 1 - self.phrase_keystrokes / self.characters if self.characters else 0.0,
            "keystroke_savings_phrases_autospace": 1 - self.autospace_phrase_keystrokes / self.autospace_characters if self.autospace_characters else 0.0,
            "tokens": self.tokens,
            "characters": self.characters,
            "keystrokes": self.keystrokes,
            "autospace_characters": self.autospace_characters,
            "autospace_keystrokes": self.autospace_keystrokes,
            "phrase_keystrokes": self.phrase_keystrokes,
            "autospace_phrase_keystrokes": self.autospace_phrase_keystrokes,
        }


def keystrokes_for(model: LanguageModel, dist, word: str, k: int, phrase=None, capital: bool = False) -> tuple[int, int, bool]:
    """Keystrokes to enter ``word``, how many words they entered and whether a completion was
    accepted: before each character, ``phrase(typed)`` (when given) says how many words the
    inline continuation of what was typed would enter if all of it is right, and one
    keystroke accepts them; else the top-k completions are offered (capitalised at a sentence
    start when ``capital``, in the case typed so far; new words before those offered at the
    keystrokes before, as the editor shows them) and accepting the right one costs one
    keystroke; else the character is typed."""
    passed: set[str] = set()
    for typed in range(len(word)):
        entered = phrase(word[:typed]) if phrase else 0
        if entered > 1:
            return typed + 1, entered, True
        shown = [text for text, _, _ in shown_completions(model, dist, word[:typed], k, capital, passed)]
        if word in shown:
            return typed + 1, 1, True
        passed.update(shown)
    return len(word), 1, False


def right_phrase(model: LanguageModel, state, ids: list[int]):
    """For ``keystrokes_for``: the number of words the continuation offered after ``typed``
    enters when it is exactly the words ``ids`` that follow, else 0."""
    def entered(typed: str) -> int:
        offer = greedy_phrase(model, state, typed, expected=ids)
        return len(offer) if offer == ids[: len(offer)] else 0
    return entered


def evaluate(model: LanguageModel, documents: list[list[list[Token]]], k: int = 5, history: list[list[Token]] = (),
             learn: Callable[[LanguageModel, int], LanguageModel] | None = None) -> Evaluation:
    """Type ``documents`` (each a list of sentences) in turn, the model's state running on from
    one into the next, after reading ``history``'s sentences (text the user wrote before, as an
    editor keeps recent documents: ``state_after_history``) without typing them. With ``learn``,
    each document is learned once it is typed (``learn(model, n)`` gives the model after
    document n is learned, as saving it in the editor does:
    ``engine.adaptation.AdaptationLayer.rehearsal``), which reads its history again to go on."""
    result = Evaluation()
    read = list(history)  # sentences read so far, typed or not
    state = state_after_history(model, read)
    previous = None
    for n, sentences in enumerate(documents):
        state, previous = _type_document(model, sentences, state, previous, k, result)
        read.extend(sentences)
        if learn is not None and n < len(documents) - 1:
            model = learn(model, n)
            state = state_after_history(model, read)
    return result


def _type_document(model: LanguageModel, sentences: list[list[Token]], state, previous, k: int, result: Evaluation):
    """Type one document's sentences from ``state``, adding to ``result``; the state after them
    and the last sentence (which says whether the next one takes a capital)."""
    get = model.vocab.ids.get
    spaced = _followed_by_space(sentences)
    for sentence in sentences:
        ids = [get(t.text, UNK_ID) for t in sentence]
        covered = 0  # words of this sentence entered by an accepted phrase
        for n, token in enumerate([*sentence, None]):
            token_id = EOS_ID if token is None else ids[n]
            dist = model.next_logprobs(state)
            rank, _ = rank_and_entropy(dist, token_id)
            result.tokens += 1
            result.log_prob += float(dist[token_id])
            hit = token_id != UNK_ID
            result.top1 += hit and rank == 1
            result.top5 += hit and rank <= 5
            if token is not None:
                capital = n == 0 and takes_capital(model, dist, previous)
                keys, _, accepted = keystrokes_for(model, dist, token.text, k, capital=capital)
                result.characters += len(token.text)
                result.keystrokes += keys
                word = is_word(token.text)  # (Presage's convention counts words, each with its space)
                space = int(id(token) in spaced)
                result.autospace_characters += word * (len(token.text) + space)
                result.autospace_keystrokes += word * (keys + (space and not accepted))
                if n >= covered:  # (words an accepted phrase entered cost nothing)
                    phrase = right_phrase(model, state, ids[n:]) if hit else None  # (no phrase holds <unk>)
                    keys, entered, accepted = keystrokes_for(model, dist, token.text, k, phrase, capital)
                    covered = n + entered
                    result.phrase_keystrokes += keys
                    # A phrase is inserted without the space after its last word (as editors show it).
                    result.autospace_phrase_keystrokes += keys + int(id(sentence[covered - 1]) in spaced) if entered > 1 else word * (keys + (space and not accepted))
            state = model.advance(state, token_id)
        previous = sentence or previous
    return state, previous


def is_word(text: str) -> bool:
    return any(c.isalnum() for c in text)


def _followed_by_space(sentences: list[list[Token]]) -> set[int]:
    """The words (by id) that end where a space would be typed in Presage's convention: a space
    or punctuation follows them, or nothing (words of unspaced scripts run on without one)."""
    flat = [token for sentence in sentences for token in sentence]
    return {id(t) for t, after in zip(flat, flat[1:] + [None]) if after is None or after.start > t.end or not is_word(after.text)}
