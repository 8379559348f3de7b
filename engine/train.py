"""Train a model and save it in the store: one path for the CLI, the language server and the
zero-set-up default model."""

from __future__ import annotations

import os

from engine.model import LanguageModel, Progress
from engine.plugins import get_backend

DEFAULT_BACKEND = "ngram"  # what `foretell train`, the default model and trainWorkspace use


def train_and_save(store, name: str, corpus, backend: str = DEFAULT_BACKEND, options=None,
                   progress: Progress | None = None, vocabulary: dict | None = None) -> LanguageModel:
    """Fit ``backend`` (its default options unless given) on ``corpus`` and save it as ``name``.
    The model already saved under that name is replaced only once the new one is written whole;
    checkpoints of an interrupted training stay in the store's work folder for ``resume``."""
    cls = get_backend(backend).cls
    model = cls.fit(corpus, cls.Options() if options is None else options, progress=progress, workdir=store.workdir(name))
    if writes_the_model():
        store.save(name, model, corpus=corpus.summary, vocabulary=vocabulary)
    return model


def writes_the_model() -> bool:
    """Whether this process saves (and reports) what it trained: under torchrun only rank 0."""
    return int(os.environ.get("RANK", "0")) == 0
