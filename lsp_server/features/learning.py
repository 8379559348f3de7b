"""Learning from what the user writes: each saved document goes into the model's adaptation
layer (engine.adaptation), replacing what its previous save added, so the base model is never
rewritten and every document can be forgotten again."""

from __future__ import annotations

from pathlib import Path

from pygls.uris import to_fs_path

from engine.privacy import excluded_by
from engine.secrets import secret_file
from engine.store import DEFAULT_MODEL


def model_name(server) -> str:
    return server.settings.model or server.store.default_name() or DEFAULT_MODEL


def exclusions(server) -> list[str]:
    """The patterns of the editor's settings and of `foretell exclude` (read at each use, so a
    change on the command line holds at once)."""
    return [*server.settings.exclude, *server.store.exclusions()]


def incognito(server) -> bool:
    return server.settings.incognito or server.store.incognito()


def may_learn(server, uri: str) -> bool:
    """False while incognito, and for a key or environment file (engine.secrets) or an excluded path."""
    path = Path(to_fs_path(uri) or uri)
    return not (incognito(server) or secret_file(path) or excluded_by(path, exclusions(server)))


def learn_document(server, uri: str, text: str) -> dict | None:
    """Learn ``text`` as document ``uri`` (worker thread); None when it is learned already or
    may not be (checked again here: incognito may have been switched on meanwhile)."""
    if not may_learn(server, uri):
        return None
    name = model_name(server)
    base = server.store.load(name, adapted=False)
    entry = server.store.layer(name).learn(uri, text, base)
    if entry is not None:
        server.refresh_model()
    return entry


def forget_document(server, uri: str) -> list[dict]:
    gone = server.store.layer(model_name(server)).forget([uri])
    server.refresh_model()
    return gone
