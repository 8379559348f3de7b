"""The one interface every backend implements, and the option parsing they share.

Primitives (per backend): the full next-token distribution for a state, the log-probability of
every token of an id stream in one pass, an incremental state, fit, save and load. Everything
else (surprisal, rank, entropy, perplexity, sampling, completion) derives from these in the
engine, once for every backend.

Log-probabilities are natural logs. An id stream is sentences ``<s> w1 ... wn </s>`` laid end to
end; ``<s>`` is context only and never scored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from engine.distribution import rank_and_entropy, top_k
from engine.errors import ForetellError
from engine.vocab import BOS_ID, EOS_ID, Vocabulary

Progress = Callable[[str, float], None]  # (stage, fraction done 0..1)


class LanguageModel(ABC):
    """A trained model over a fixed vocabulary."""

    name: ClassVar[str]  # the backend's name, e.g. "ngram"
    Options: ClassVar[type]  # a dataclass of training options with defaults
    format_version: ClassVar[int] = 1
    # How closely (in nats) one-step and batched scoring agree: tight for exact models, looser
    # where a batch changes the arithmetic (a quantized network scales its inputs per batch).
    score_tolerance: float = 1e-9
    # True when a sentence's scores depend only on its own words (every sentence starts afresh
    # at <s>): document analysis then re-scores only the sentences an edit touched.
    sentence_independent: ClassVar[bool] = False
    # True when training is numpy passes over large arrays within a memory budget: `train` then
    # keeps this process to one malloc arena, so that what a pass frees goes back to the system
    # (engine.memory.one_malloc_arena). Off where threads allocate in parallel (torch).
    one_malloc_arena: ClassVar[bool] = False
    # Set by the store: the name the model was loaded or saved under (None for one in memory).
    model_name: str | None = None
    # Set by the adaptation layer: how many of the user's documents the model has learned.
    learned_documents: int = 0

    def __init__(self, vocab: Vocabulary, options):
        self.vocab = vocab
        self.options = options

    # -- training and storage -------------------------------------------------------------
    @classmethod
    def training_memory(cls, options) -> int | None:
        """Bytes of working memory a training with ``options`` may use, if it keeps to a budget
        (``train`` then reads the corpus in pieces that follow it too); None if it does not."""
        return None

    @classmethod
    @abstractmethod
    def fit(cls, corpus, options, progress: Progress | None = None, workdir: Path | None = None) -> "LanguageModel":
        """Train on ``corpus`` (an engine.corpus.Corpus). ``workdir`` is a private folder for
        checkpoints that outlive an interrupted training (backends may ignore it)."""

    @abstractmethod
    def save(self, folder: Path) -> dict:
        """Write the backend's arrays into ``folder``; return facts for the manifest."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, vocab: Vocabulary, options, facts: dict) -> "LanguageModel":
        """Read a model that ``save`` wrote (never with pickle)."""

    # -- scoring primitives ------------------------------------------------------------------
    @abstractmethod
    def score_ids(self, ids: np.ndarray) -> np.ndarray:
        """Log-probability of each position of an id stream; NaN where ``ids`` is ``<s>``."""

    @abstractmethod
    def initial_state(self) -> Any:
        """The state at the start of a sentence (just after ``<s>``)."""

    @abstractmethod
    def advance(self, state, token_id: int) -> Any:
        """The state after ``token_id``; after ``</s>`` it is a new sentence's initial state."""

    def advance_many(self, state, token_ids) -> Any:
        """The state after each of ``token_ids`` in turn; backends may do it in one pass."""
        for token in token_ids:
            state = self.advance(state, int(token))
        return state

    @abstractmethod
    def next_logprobs(self, state) -> np.ndarray:
        """Log-probabilities of every vocabulary id after ``state`` (``<s>`` gets -inf)."""

    def token_stats(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Log-probability, rank and entropy (bits) at every position of an id stream (NaN, 0,
        NaN at ``<s>``). This walks the incremental state and builds every distribution;
        backends override it with something faster when their structure allows."""
        return self._walk_stats(ids, self.initial_state())[:3]

    def token_stats_in_parallel(self) -> bool:
        """Whether ``token_stats`` of a long stream uses both cores itself, the interpreter let
        go: a caller then runs it on a thread beside its own work, rather than on forked
        processes (each of which would rank with a cache of its own)."""
        return False

    def token_stats_from(self, ids: np.ndarray, state) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """``token_stats`` of whole sentences (``<s> ... </s>`` each) read on from ``state``, the
        state at the start of the first (as ``initial_state`` or ``advance`` past ``</s>`` give
        it), and the state after each sentence: lets an editor re-score from an edit on."""
        return self._walk_stats(ids, state)

    def states_agree(self, a, b) -> bool:
        """Whether two states predict the same from here on (to within what scores can show).
        Exact equality by default; neural models compare their hidden states within a tolerance."""
        try:
            return bool(a == b)
        except (TypeError, ValueError):
            return False

    def _walk_stats(self, ids: np.ndarray, state):

        n = len(ids)
        logprob, rank, entropy = np.full(n, np.nan), np.zeros(n, dtype=np.int64), np.full(n, np.nan)
        after = []
        for i, token in enumerate(ids):
            if token == BOS_ID:
                continue
            dist = self.next_logprobs(state)
            logprob[i] = dist[token]
            rank[i], entropy[i] = rank_and_entropy(dist, int(token))
            state = self.advance(state, int(token))
            if token == EOS_ID:
                after.append(state)
        return logprob, rank, entropy, after

    def expected(self, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most probable words at every position of an id stream and their
        log-probabilities, most probable first (-1 and -inf where there are fewer, and in rows
        at ``<s>``). This walks the incremental state, computing each distinct state of a
        sentence-independent model once; backends may override it."""
        ids = np.asarray(ids, dtype=np.int64)
        top_ids, top_logp = np.full((len(ids), k), -1, dtype=np.int64), np.full((len(ids), k), -np.inf)
        memo: dict = {}
        state = self.initial_state()
        for i, token in enumerate(ids):
            if token == BOS_ID:
                continue
            key = state if self.sentence_independent and isinstance(state, tuple) else None
            found = memo.get(key) if key is not None else None
            if found is None:
                found = top_k(self.next_logprobs(state), k)
                if key is not None:
                    memo[key] = found
            top_ids[i, : len(found[0])], top_logp[i, : len(found[0])] = found
            state = self.advance(state, int(token))
        return top_ids, top_logp

    def describe(self) -> dict:
        """Facts for ``foretell models info`` beyond the manifest (architecture, sizes)."""
        return {}


def option(default, help: str):
    """A backend option's default and the one line of help ``foretell backends --options`` and
    ``foretell train --backend NAME --help`` show for it."""
    return dataclasses.field(default=default, metadata={"help": help})


def options_from_strings(options_cls: type, values: dict[str, Any]):
    """Build a backend's options dataclass from CLI strings, with one clear error per bad value."""
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    hints = typing.get_type_hints(options_cls)
    kwargs = {}
    for key, raw in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            known = ", ".join(f.replace("_", "-") for f in fields)
            raise ForetellError(f"unknown option {key!r} for this backend; options are: {known}")
        kwargs[name] = _convert(name, hints[name], raw)
    try:
        return options_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ForetellError(str(exc)) from None


@dataclasses.dataclass
class OptionField:
    """One backend option as a user sees it: ``type`` is int, float, str or bool (an option
    that may be None has its other type here and ``optional`` set)."""

    name: str
    type: type
    default: Any
    help: str
    optional: bool


def option_fields(options_cls: type) -> list[OptionField]:
    """The options of a backend's options dataclass, in their declared order."""
    hints = typing.get_type_hints(options_cls)
    fields = []
    for f in dataclasses.fields(options_cls):
        kind, optional = _unwrap(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        fields.append(OptionField(f.name, kind, default, f.metadata.get("help", ""), optional))
    return fields


def _unwrap(hint) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _convert(name: str, hint, raw):
    if not isinstance(raw, str):
        return raw
    target, optional = _unwrap(hint)
    if optional and raw.lower() in ("none", ""):
        return None
    try:
        if target is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return target(raw)
    except (TypeError, ValueError):
        raise ForetellError(f"option {name.replace('_', '-')}: {raw!r} is not a valid {getattr(target, '__name__', target)}") from None


def options_to_dict(options) -> dict:
    return dataclasses.asdict(options)


def sentence_pieces(ids: np.ndarray, size: int) -> list[np.ndarray]:
    """``ids`` cut before sentence starts into pieces of about ``size`` tokens (a sentence
    longer than that stays whole): n-gram contexts never reach back across a ``<s>``, so the
    pieces score apart as they do together."""
    starts = np.flatnonzero(ids == BOS_ID)
    if len(starts) == 0:
        return [ids]
    cuts = np.unique(starts[np.minimum(np.searchsorted(starts, np.arange(0, len(ids), size)), len(starts) - 1)])
    return np.split(ids, cuts[cuts > 0])


def sentence_starts(ids: np.ndarray) -> np.ndarray:
    """For every position, the position of the ``<s>`` that opens its sentence (0 if none)."""
    positions = np.arange(len(ids))
    return np.maximum.accumulate(np.where(ids == BOS_ID, positions, 0)) if len(ids) else positions
