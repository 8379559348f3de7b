"""A mixture: the weighted average of other models' distributions (linear interpolation), with
weights fitted by EM on held-out text (``foretell mix``).

    P(w | h) = sum_i weight_i * P_i(w | h)

The parts are models in the store, referenced by name; the store loads them (with what they have
learned) when it loads the mixture and hands them in (``from_parts``). Their vocabularies may
differ: the mixture's is their union, and a word a part does not know gets an equal share of
that part's ``<unk>`` probability, so every part is still a proper distribution over the union
and so is the mixture.

A mixture learns the user's documents through its parts: each part that can learn learns them,
the others (the cache) stay as they are, and the weights are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.capabilities import Learnable
from engine.errors import ForetellError
from engine.model import LanguageModel, option
from engine.vocab import BOS_ID, UNK_ID, Vocabulary


@dataclass
class MixOptions:
    parts: str = option("", "model names, comma-separated")
    weights: str = option("", "one weight a part, comma-separated, summing to 1 (foretell mix fits them)")

    def __post_init__(self):
        names, weights = self.names, self.weight_list
        if len(names) < 2:
            raise ValueError("a mixture needs at least two models")
        if len(weights) != len(names) or any(not (w >= 0) for w in weights) or abs(sum(weights) - 1) > 1e-6:
            raise ValueError("a mixture needs one weight per model, each at least 0, summing to 1")

    @classmethod
    def of(cls, names: list[str], weights) -> "MixOptions":
        return cls(parts=",".join(names), weights=",".join(repr(float(w)) for w in weights))

    @property
    def names(self) -> list[str]:
        return [n for n in self.parts.split(",") if n]

    @property
    def weight_list(self) -> list[float]:
        try:
            return [float(w) for w in self.weights.split(",") if w]
        except ValueError:
            raise ValueError(f"weights must be numbers, not {self.weights!r}") from None


def fit_weights(probabilities: np.ndarray, iterations: int = 200, tolerance: float = 1e-7) -> tuple[np.ndarray, list[float]]:
    """EM for interpolation weights: ``probabilities`` is (parts, tokens), each part's
    probability of each held-out token. Each step gives every part the share of the tokens it
    is responsible for; the held-out likelihood never decreases. Returns the weights and the
    mean log-likelihood after each step."""
    k = len(probabilities)
    weights = np.full(k, 1 / k)
    history: list[float] = []
    for _ in range(iterations):
        mixed = weights @ probabilities  # (tokens,)
        history.append(float(np.mean(np.log(mixed))))
        weights = (weights[:, None] * probabilities / mixed).mean(axis=1)
        if len(history) > 1 and history[-1] - history[-2] < tolerance:
            break
    return weights, history


class MixtureModel(LanguageModel):
    """Interpolation of other models, weights fitted by EM on held-out text."""

    name = "mix"
    Options = MixOptions

    def __init__(self, parts: list[LanguageModel], options: MixOptions):
        tokens = list(parts[0].vocab.tokens)
        seen = set(tokens)
        for part in parts[1:]:
            for t in part.vocab.tokens:
                if t not in seen:
                    seen.add(t)
                    tokens.append(t)
        super().__init__(Vocabulary(tokens), options)
        self.parts = parts
        self.weights = np.array(options.weight_list)
        self.to_part, self.share = [], []
        for part in parts:
            to_part = np.array([part.vocab.ids.get(t, UNK_ID) for t in tokens], dtype=np.int64)
            unknown = to_part == UNK_ID  # the union's <unk> and the words this part lacks
            share = np.ones(len(tokens))
            share[unknown] = 1 / unknown.sum()
            self.to_part.append(to_part)
            self.share.append(share)
        self.sentence_independent = all(p.sentence_independent for p in parts)

    # -- made of other models (engine.capabilities.CombinesModels) ------------------------
    @classmethod
    def part_names(cls, options: MixOptions) -> list[str]:
        return options.names

    @classmethod
    def from_parts(cls, parts: list[LanguageModel], options: MixOptions) -> "MixtureModel":
        return cls(parts, options)

    @classmethod
    def combine(cls, parts: list[LanguageModel], names: list[str], weights: list[float] | None = None) -> "MixtureModel":
        """``parts`` (the models called ``names``) mixed with ``weights``, equal by default."""
        return cls(parts, MixOptions.of(names, weights or [1 / len(names)] * len(names)))

    def fitted(self, ids: np.ndarray) -> tuple["MixtureModel", dict]:
        """These parts with weights fitted by EM on the id stream ``ids`` (over this mixture's
        union vocabulary), and the held-out perplexity of each part and of the mixture."""
        ids = np.asarray(ids, dtype=np.int64)
        probabilities = self.part_probabilities(ids)[:, ids != BOS_ID]
        if probabilities.shape[1] == 0:
            raise ForetellError("the text to fit the weights on has no words")
        weights, history = fit_weights(probabilities)
        names = self.options.names
        fitted = type(self)(self.parts, MixOptions.of(names, weights / weights.sum()))
        report = {
            "tokens": int(probabilities.shape[1]),
            "iterations": len(history),
            "parts": [{"name": n, "weight": float(w), "perplexity": float(np.exp(-np.mean(np.log(p))))} for n, w, p in zip(names, weights, probabilities)],
            "perplexity": float(np.exp(-np.mean(np.log(weights @ probabilities)))),
        }
        return fitted, report

    # -- learning the user's documents (engine.capabilities.Learnable) -----------------------
    def _learners(self) -> list[bool]:
        """Which parts can learn online."""
        def learns(part) -> bool:
            try:
                part.check_can_learn()
            except ForetellError:
                return False
            return True
        return [isinstance(part, Learnable) and learns(part) for part in self.parts]

    def check_can_learn(self) -> None:
        if not any(self._learners()):
            raise ForetellError("none of this mixture's parts can learn online (n-gram, rnn and window models can)")

    def with_documents(self, words: list[str], streams: list[np.ndarray]) -> "MixtureModel":
        """This mixture with every part that can learn having learned ``streams`` (ids over this
        mixture's vocabulary extended by ``words``), each through its own vocabulary; same weights."""
        self.check_can_learn()
        tokens = [*self.vocab.tokens, *words]
        used = np.unique(np.concatenate([np.asarray(s, dtype=np.int64) for s in streams])) if streams else np.zeros(0, dtype=np.int64)
        parts = []
        for part, learns in zip(self.parts, self._learners()):
            if not learns:
                parts.append(part)
                continue
            known = part.vocab.ids
            to_part = np.full(len(tokens), UNK_ID, dtype=np.int64)
            new: list[str] = []
            for i in used.tolist():
                at = known.get(tokens[i])
                if at is None:
                    at = len(part.vocab) + len(new)
                    new.append(tokens[i])
                to_part[i] = at
            parts.append(part.with_documents(new, [to_part[np.asarray(s, dtype=np.int64)] for s in streams]))
        return type(self)(parts, self.options)

    @classmethod
    def fit(cls, corpus, options, progress=None, workdir=None):
        raise ForetellError("a mixture is made from trained models: `foretell mix --name NAME MODEL... --fit FILE`")

    def save(self, folder: Path) -> dict:
        return {"parts": [{"name": n, "backend": p.name, "weight": float(w)} for n, p, w in zip(self.options.names, self.parts, self.weights)]}

    @classmethod
    def load(cls, folder: Path, vocab, options: MixOptions, facts: dict):
        raise ForetellError(f"{folder.name}: a mixture is loaded through the store, which finds its parts")

    # -- scoring -----------------------------------------------------------------------------
    def part_probabilities(self, ids: np.ndarray) -> np.ndarray:
        """(parts, positions): each part's probability of each token (NaN at <s>)."""
        ids = np.asarray(ids, dtype=np.int64)
        return np.stack([np.exp(p.score_ids(m[ids])) * s[ids] for p, m, s in zip(self.parts, self.to_part, self.share)])

    def score_ids(self, ids: np.ndarray) -> np.ndarray:
        return np.log(self.weights @ self.part_probabilities(ids))

    def initial_state(self):
        return tuple(p.initial_state() for p in self.parts)

    def advance(self, state, token_id: int):
        return tuple(p.advance(s, int(m[token_id])) for p, s, m in zip(self.parts, state, self.to_part))

    def advance_many(self, state, token_ids):
        ids = np.asarray(token_ids, dtype=np.int64)
        return tuple(p.advance_many(s, m[ids]) for p, s, m in zip(self.parts, state, self.to_part))

    def states_agree(self, a, b) -> bool:
        return all(part.states_agree(x, y) for part, x, y in zip(self.parts, a, b))

    def next_logprobs(self, state) -> np.ndarray:
        mixed = np.zeros(len(self.vocab))
        for part, s, to_part, share, w in zip(self.parts, state, self.to_part, self.share, self.weights):
            mixed += w * np.exp(part.next_logprobs(s))[to_part] * share
        with np.errstate(divide="ignore"):
            dist = np.log(mixed)
        dist[BOS_ID] = -np.inf
        return dist

    def describe(self) -> dict:
        return {"parts": [{"name": n, "backend": p.name, "weight": round(float(w), 6)} for n, p, w in zip(self.options.names, self.parts, self.weights)]}
