"""Learning from what the user writes: each saved document goes into the model's adaptation
layer (engine.adaptation), replacing what its previous save added, so the base model is never
rewritten and every document can be forgotten again."""

from __future__ import annotations

from pathlib import Path

from pygls.uris import to_fs_path

from engine.secrets import secret_file
from engine.store import DEFAULT_MODEL


def model_name(server) -> str:
    return server.settings.model or server.store.default_name() or DEFAULT_MODEL


def learn_document(server, uri: str, text: str) -> dict | None:
    """Learn ``text`` as document ``uri`` (worker thread); None when it is learned already."""
    if secret_file(Path(to_fs_path(uri) or uri)):
        return None  # a key or environment file is never learned (engine.secrets)
    name = model_name(server)
    base = server.store.load(name, adapted=False)
    entry = server.store.layer(name).learn(uri, text, base)
    if entry is not None:
        server.reload_model()
    return entry


def forget_document(server, uri: str) -> list[dict]:
    gone = server.store.layer(model_name(server)).forget([uri])
    server.reload_model()
    return gone
