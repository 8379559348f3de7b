"""Sampling text from any model: temperature, top-k and nucleus (top-p), reproducible by seed."""

from __future__ import annotations

import math

import numpy as np

from engine.complete import state_after
from engine.errors import ForetellError
from engine.model import LanguageModel
from engine.scripts import joins_without_space
from engine.tokenizer import tokenize
from engine.vocab import UNK_ID

NO_SPACE_BEFORE = set(".,;:!?)]}%…»”’") | {"...", "'s", "n't"}
_NO_SPACE_AFTER = set("([{«“$")


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ForetellError(f"temperature must be 0 or more, not {temperature}")
    if top_k < 0:
        raise ForetellError(f"top-k must be 0 (off) or more, not {top_k}")
    if not 0 < top_p <= 1:
        raise ForetellError(f"top-p must be in (0, 1], not {top_p}")


def sample(logprobs: np.ndarray, rng: np.random.Generator, temperature=1.0, top_k=0, top_p=1.0) -> int:
    """One id drawn from ``logprobs`` (natural logs); temperature 0 is greedy."""
    if temperature == 0:
        return int(np.argmax(logprobs))
    logits = logprobs / temperature
    order = np.argsort(-logits, kind="stable")
    order = order[np.isfinite(logits[order])]
    if top_k:
        order = order[:top_k]
    probs = np.exp(logits[order] - logits[order[0]])
    probs /= probs.sum()
    if top_p < 1:
        keep = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(order[rng.choice(len(order), p=probs)])


def generate(model: LanguageModel, prompt: str = "", n: int = 20, temperature=1.0, top_k=0, top_p=1.0, seed=None) -> list[str]:
    """``n`` tokens following ``prompt``; ``</s>`` appears where a sentence ends."""
    check_sampling(temperature, top_k, top_p)
    rng = np.random.default_rng(seed)
    sentences = tokenize(prompt)
    state = state_after(model, sentences)
    out: list[str] = []
    while len(out) < n:
        dist = model.next_logprobs(state).copy()
        dist[UNK_ID] = -np.inf
        token = sample(dist, rng, temperature, top_k, top_p)
        out.append(model.vocab.tokens[token])
        state = model.advance(state, token)
    return out


def detokenize(tokens: list[str], after: str = "") -> str:
    """Tokens joined as prose: no space before closing punctuation nor next to a script written
    without spaces, sentences end at ``</s>``."""
    text = ""
    previous = after[-1:] if after else ""
    for token in tokens:
        if token == "</s>":
            continue
        spaceless = not previous or previous.isspace() or joins_without_space(previous, token[0])
        glue = "" if (spaceless or token in NO_SPACE_BEFORE or previous in _NO_SPACE_AFTER) else " "
        text += glue + token
        previous = token[-1]
    return text
