"""Completion items and inline (ghost-text) continuations from the text before the cursor."""

from __future__ import annotations

import math

import numpy as np
from lsprotocol import types

from engine.complete import predict, split_prefix, state_after, top_completions
from engine.generate import detokenize
from engine.model import LanguageModel
from engine.vocab import BOS_ID, EOS_ID, UNK_ID

WINDOW = 2000  # characters of context before the cursor: bounded work on huge lines


def context_window(text_before: str) -> str:
    """The last paragraph before the cursor, at most WINDOW characters."""
    window = text_before[-WINDOW:]
    cut = window.rfind("\n\n")
    return window[cut + 2 :] if cut >= 0 else window


def completion_list(model: LanguageModel, text_before: str, position: types.Position, k: int, num_units=len) -> types.CompletionList:
    """Next words after whitespace, else completions of the half-typed word, most probable
    first; each edit replaces the typed part of the word."""
    result = predict(model, context_window(text_before), k)
    start = types.Position(line=position.line, character=position.character - num_units(result.prefix))
    items = []
    for rank, (word, logprob) in enumerate(result.predictions, start=1):
        p = math.exp(logprob)
        items.append(
            types.CompletionItem(
                label=word,
                kind=types.CompletionItemKind.Text,
                detail=f"p={p:.3f} · {-logprob / math.log(2):.1f} bits",
                sort_text=f"{rank:04d}",
                filter_text=word,
                text_edit=types.TextEdit(range=types.Range(start=start, end=position), new_text=word),
            )
        )
    return types.CompletionList(is_incomplete=True, items=items)


def continuation(model: LanguageModel, text_before: str, max_words: int, min_probability: float) -> str:
    """The likely rest of the phrase: greedy words until confidence drops or the sentence ends."""
    window = context_window(text_before)
    sentences, prefix = split_prefix(window)
    state = state_after(model, sentences)
    words: list[str] = []
    suffix = ""
    if prefix:
        best = top_completions(model, model.next_logprobs(state), prefix, 1)
        if not best or math.exp(best[0][1]) < min_probability or model.vocab.tokens[best[0][0]] == prefix:
            return ""
        word = model.vocab.tokens[best[0][0]]
        suffix = word[len(prefix) :]
        state = model.advance(state, best[0][0])
    while len(words) < max_words:
        dist = model.next_logprobs(state).copy()
        dist[[UNK_ID, BOS_ID]] = -np.inf
        best = int(np.argmax(dist))
        if best == EOS_ID or math.exp(dist[best]) < min_probability:
            break
        words.append(model.vocab.tokens[best])
        state = model.advance(state, best)
    return suffix + detokenize(words, after=window + suffix)
