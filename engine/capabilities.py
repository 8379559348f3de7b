"""Optional abilities a backend may have, as small protocols the CLI and the server ask for.

Callers write ``isinstance(model, ExportsArpa)`` (or ``backend_with(ImportsArpa)`` for an ability
of the class), never a backend's name: a third-party backend that has the methods has the
ability, and one that lacks them gets a clear "cannot" instead of an AttributeError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from engine.errors import ForetellError
from engine.plugins import BackendInfo, backends


@runtime_checkable
class ExportsArpa(Protocol):
    """Writes itself as an ARPA file (``foretell models export``)."""

    def export_arpa(self, path: Path) -> None: ...


@runtime_checkable
class ImportsArpa(Protocol):
    """A backend class that reads ARPA files (``foretell models import``)."""

    def from_arpa(self, path: Path): ...


@runtime_checkable
class Quantizable(Protocol):
    """Has a smaller copy with 8-bit numbers (``foretell models optimize``): a network's int8
    weights, an n-gram model's 8-bit probabilities and backoffs."""

    def quantized(self): ...


@runtime_checkable
class Prunable(Protocol):
    """Has smaller copies with fewer n-grams (``foretell models prune``): to at least ``ngrams``
    entries by relative entropy, or without those seen at most ``min_counts[k]`` times (order
    k + 2, the last value repeating). ``bytes_per_ngram`` is what one costs in a pruned copy."""

    bytes_per_ngram: int

    def pruned(self, ngrams: int | None = None, min_counts: list[int] | None = None): ...


@runtime_checkable
class HasTrainingCurves(Protocol):
    """Recorded one row of figures per training epoch (``models plot``, ``score --html``)."""

    metrics: list[dict]


@runtime_checkable
class DiagnosesGradients(Protocol):
    """Measures the gradient through time (``foretell diagnose gradients``)."""

    def gradient_norms(self, ids: np.ndarray, distance: int, samples: int) -> np.ndarray: ...


@runtime_checkable
class Learnable(Protocol):
    """Adds the user's documents without retraining (``foretell learn``, learning on save)."""

    def check_can_learn(self) -> None: ...

    def with_documents(self, words: list[str], streams: list[np.ndarray]): ...


@runtime_checkable
class CombinesModels(Protocol):
    """A backend class whose models are made of other models in the store (``foretell mix``).
    The store resolves the names ``part_names`` gives and hands the models to ``from_parts``,
    so the backend never needs to know where or how models are kept."""

    def part_names(self, options) -> list[str]: ...

    def from_parts(self, parts: list, options): ...

    def combine(self, parts: list, names: list[str]):
        """The parts combined with neutral weights; its ``fitted(ids)`` gives the combination
        fitted to held-out ids and a report."""


def has_training_curves(model) -> bool:
    return isinstance(model, HasTrainingCurves) and bool(model.metrics)


def check_can_learn(model) -> None:
    """Raise ForetellError saying why ``model`` cannot learn online, if it cannot."""
    if not isinstance(model, Learnable):
        raise ForetellError(f"{model.name!r} models cannot learn online (n-gram, rnn and window models can, and mixtures with one of them)")
    model.check_can_learn()


def backend_with(ability: type, what: str) -> BackendInfo:
    """The first installed backend (by name) whose class has ``ability``, or a clear error
    saying that no installed backend can do ``what``. Stops at the first, so backends that are
    slow to import (torch) are loaded only when nothing before them can."""
    for info in sorted(backends().values(), key=lambda b: b.name):
        try:
            if isinstance(info.cls, ability):
                return info
        except ForetellError:
            continue  # a backend that cannot load has no abilities
    raise ForetellError(f"no installed backend can {what} (see `foretell backends`)")
