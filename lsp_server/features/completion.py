"""Completion items and inline (ghost-text) continuations from the text before the cursor."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from lsprotocol import types

from engine.complete import as_typed, at_cursor, greedy_phrase, predict, typed_case
from engine.generate import NO_SPACE_BEFORE, detokenize
from engine.model import LanguageModel

WINDOW = 2000  # characters of context before the cursor: bounded work on huge lines
EXTRA_PUNCTUATION = 2  # closing punctuation offered after the words
WORD_CONTEXT = 200  # characters before a word that say, with its line, which word it is (EarlierOffers)


def context_window(text_before: str) -> str:
    """The last paragraph before the cursor, at most WINDOW characters."""
    window = text_before[-WINDOW:]
    cut = window.rfind("\n\n")
    return window[cut + 2 :] if cut >= 0 else window


@dataclass(frozen=True)
class Shown:
    """What a completion list offered: for which word, after what was typed of it."""

    word: tuple
    prefix: str
    words: tuple[str, ...]


class EarlierOffers:
    """The words a document's completion lists offered at each keystroke of the word being
    typed: typing on past a word offered says it is likely not the one meant, so the next
    keystroke's list shows new words first (engine.complete.shown_completions). Only lists the
    user had time to look at count: sent to the editor (one overtaken by the next keystroke was
    never shown) at least LOOKED_AT_S before the next keystroke asked again (a fast typist who
    types through the lists keeps them as they are)."""

    LOOKED_AT_S = 0.5

    def __init__(self):
        # (line, the text just before the word): the word they were offered for; what was typed of it
        # -> (the words offered then, when they were sent). Replaced whole, never changed:
        # completion reads it on its lane.
        self._kept: tuple[tuple | None, dict[str, tuple[tuple[str, ...], float]]] = (None, {})

    def passed(self, word: tuple, prefix: str) -> set[str]:
        """The words offered for ``word``, and looked at, when less of ``prefix`` was typed."""
        kept_word, offered = self._kept
        if word != kept_word:
            return set()
        seen_before = time.monotonic() - self.LOOKED_AT_S
        return {w for typed, (words, sent) in offered.items() if len(typed) < len(prefix) and prefix.startswith(typed) and sent <= seen_before for w in words}

    def sent(self, shown: Shown) -> None:
        kept_word, offered = self._kept
        self._kept = (shown.word, {**(offered if shown.word == kept_word else {}), shown.prefix: (shown.words, time.monotonic())})


def completion_list(model: LanguageModel, text_before: str, position: types.Position, k: int, num_units=len, state=None,
                    earlier: EarlierOffers | None = None) -> tuple[types.CompletionList, Shown]:
    """Next words after whitespace, else completions of the half-typed word, most probable
    first (new words before those ``earlier`` lists offered for the same word); each edit
    replaces the typed part of the word. After whitespace, punctuation that closes (``,`` ``.``
    ``)``) follows the words and its edit removes the space before it, so accepting it gives
    "Congress," and not "Congress ,". ``state``: the one the context is read from
    (lsp_server.features.history; by default the model's initial state). Also what the list
    shows, for ``EarlierOffers.sent`` once the editor has it."""
    window = context_window(text_before)
    def word_at(prefix: str) -> tuple:
        """Which word is being typed: its line and the text just before it (the window's far
        end moves with each keystroke in a long paragraph; this does not)."""
        return position.line, window[: len(window) - len(prefix)][-WORD_CONTEXT:]
    passed = (lambda prefix: earlier.passed(word_at(prefix), prefix)) if earlier else None
    result = predict(model, window, k + EXTRA_PUNCTUATION, state, passed)
    start = types.Position(line=position.line, character=max(0, position.character - num_units(result.prefix)))
    space = text_before[len(text_before.rstrip()) :] if not result.prefix else ""
    words = [(w, lp) for w, lp in result.predictions if w[0].isalnum() or not space]
    # (Only where the space is on the cursor's line: a position past the end has no space before it.)
    attach = space and "\n" not in space and position.character >= num_units(space)
    closing = [(w, lp) for w, lp in result.predictions if w in NO_SPACE_BEFORE and attach]
    items = [_item(word, logprob, rank, types.Range(start=start, end=position), word) for rank, (word, logprob) in enumerate(words[:k], start=1)]
    if closing:
        before = types.Position(line=position.line, character=position.character - num_units(space))
        for rank, (word, logprob) in enumerate(closing[:EXTRA_PUNCTUATION], start=len(items) + 1):
            items.append(_item(word, logprob, rank, types.Range(start=before, end=position), space + word))
    shown = Shown(word_at(result.prefix), result.prefix, tuple(item.label for item in items))
    return types.CompletionList(is_incomplete=True, items=items), shown


def _item(word: str, logprob: float, rank: int, replaced: types.Range, filter_text: str) -> types.CompletionItem:
    return types.CompletionItem(
        label=word,
        kind=types.CompletionItemKind.Text,
        detail=f"p={math.exp(logprob):.3f} · {-logprob / math.log(2):.1f} bits",
        sort_text=f"{rank:04d}",
        filter_text=filter_text,
        text_edit=types.TextEdit(range=replaced, new_text=word),
    )


def continuation(model: LanguageModel, text_before: str, max_words: int, min_probability: float, state=None) -> str:
    """The likely rest of the phrase: greedy words until confidence drops or the sentence ends."""
    window = context_window(text_before)
    cursor = at_cursor(model, window, state)
    prefix = cursor.prefix
    ids = greedy_phrase(model, cursor.state, prefix, max_words, min_probability)
    if not ids:
        return ""
    words = [model.vocab.tokens[i] for i in ids]
    capital = not prefix and cursor.takes_capital(model)
    words[0] = as_typed(words[0], typed_case(prefix, capital), model.vocab)
    suffix = words.pop(0)[len(prefix) :] if prefix else ""
    return suffix + detokenize(words, after=window + suffix)
