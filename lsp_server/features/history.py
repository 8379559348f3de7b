"""The user's recent writing as the history a model with memory starts each document from.

A cache offers the names and terms of the notes just written, and a recurrent network carries
their topic, only if it has read them: completion reads each document's context from a state
that has read the end of the other documents opened or saved lately (most recent last, as
``engine.complete.state_after_history`` reads them; ``foretell evaluate --history`` simulates
it). Models whose sentences start afresh (n-gram, window) are not affected. Documents the server
may not learn from (incognito, key files, excluded paths) never enter it, secrets are blanked,
and nothing of it is written anywhere.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable

from engine.complete import HISTORY_TOKENS, state_after_history
from engine.model import LanguageModel
from engine.secrets import redact
from engine.tokenizer import tokenize

DOCUMENTS = 20  # documents remembered
KEEP_CHARS = 8 * HISTORY_TOKENS  # of each document's end: the whole history when it is prose


class RecentWriting:
    """The ends of recently opened and saved documents, and each document's start state, worked
    out on the background lane (``refresh``) so that completion never waits for it: until it is
    ready, completion reads from the state kept before (or the model's initial state)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._texts: dict[str, str] = {}  # uri -> the end of its text, the most recent last
        self._generation = 0
        self._states: dict[str, tuple] = {}  # uri -> (weak reference to the model, generation, state)
        self._pending: set[str] = set()  # uris whose refresh is scheduled

    def remember(self, uri: str, text: str) -> None:
        """``uri`` was opened or saved with ``text`` (called on the event loop: no model work)."""
        with self._lock:
            self._texts.pop(uri, None)
            self._texts[uri] = text[-KEEP_CHARS:]
            while len(self._texts) > DOCUMENTS:
                self._texts.pop(next(iter(self._texts)))
            self._generation += 1

    def closed(self, uri: str) -> None:
        """Let go of ``uri``'s start state; its text stays history for the others."""
        with self._lock:
            self._states.pop(uri, None)

    def kept(self, model: LanguageModel, uri: str):
        """The start state kept for ``uri`` and ``model`` (maybe from an older history), or None:
        the model's initial state. Never any model work."""
        with self._lock:
            kept = self._states.get(uri)
        return kept[2] if kept is not None and kept[0]() is model else None

    def needs_refresh(self, uri: str, model: LanguageModel | None) -> bool:
        """Whether ``uri``'s start state is missing, or older than the history or than ``model``
        (the one in use, if loaded), and no refresh is scheduled; if so, one is now taken to be
        (call ``refresh`` next)."""
        with self._lock:
            kept = self._states.get(uri)
            if uri in self._pending or (kept is not None and kept[1] == self._generation and kept[0]() is model):
                return False
            self._pending.add(uri)
            return True

    def refresh(self, load_model: Callable[[], LanguageModel], uri: str) -> None:
        """Work out ``uri``'s start state for the model ``load_model()`` gives: after the other
        documents' recent text (background lane). A model whose sentences start afresh keeps None."""
        try:
            model = load_model()
            with self._lock:
                generation = self._generation
                others = [text for other, text in self._texts.items() if other != uri]
            state = None
            if not model.sentence_independent:
                sentences: list = []
                held = 0
                for text in reversed(others):  # the most recent first, until there is enough
                    read = tokenize(redact(text))
                    sentences[:0] = read
                    held += sum(len(s) + 1 for s in read)
                    if held >= HISTORY_TOKENS:
                        break
                state = state_after_history(model, sentences)
            with self._lock:  # (weakly: a state kept for a document not typed in must not keep an old model alive)
                self._states[uri] = (weakref.ref(model), generation, state)
        finally:
            with self._lock:
                self._pending.discard(uri)
