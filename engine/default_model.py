"""The zero-set-up default model: an n-gram model of the help topics that ship with Python
(``pydoc_data``), built on first use and cached in the store."""

from __future__ import annotations

import sys

from engine.corpus import corpus_from_text
from engine.errors import ForetellError
from engine.model import LanguageModel
from engine.store import DEFAULT_MODEL, ModelStore
from engine.train import train_and_save


def default_text() -> str:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip it
        raise ForetellError(
            "this Python has no pydoc_data help topics to build the default model from; "
            "train one with `foretell train --name default PATH`"
        ) from None
    return "\n\n".join(topics[key] for key in sorted(topics))


def build_default(store: ModelStore, notify=None) -> LanguageModel:
    if notify:
        notify("Building the default model from Python's help topics (once)...")
    corpus = corpus_from_text(default_text(), source=f"pydoc_data help topics, Python {sys.version.split()[0]}")
    return train_and_save(store, DEFAULT_MODEL, corpus)


def load_model(store: ModelStore, name: str | None = None, notify=None) -> LanguageModel:
    """The named model, or the default one (built the first time it is needed)."""
    if name is not None and not (name == DEFAULT_MODEL and not store.exists(DEFAULT_MODEL)):
        return store.load(name)
    default = name or store.default_name()
    if default == DEFAULT_MODEL and not store.exists(DEFAULT_MODEL):
        return build_default(store, notify)
    return store.load(default)
