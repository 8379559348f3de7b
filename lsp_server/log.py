"""Each session's log, shown in its editor's output (``window/logMessage``): an unexpected error in
work nobody awaits (a debounced analysis, diagnostics) reaches the user instead of vanishing.
A session has a logger of its own, so over TCP one client never sees another's messages."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading

from lsprotocol import types

_sessions = itertools.count(1)

LEVELS = ((logging.ERROR, types.MessageType.Error), (logging.WARNING, types.MessageType.Warning), (logging.INFO, types.MessageType.Info))


class EditorLog(logging.Handler):
    """Sends a session logger's records (INFO and up) to that session's editor."""

    def __init__(self, server):
        super().__init__(logging.INFO)
        self.server = server
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        self.setFormatter(logging.Formatter("foretell: %(message)s"))

    @classmethod
    def attach(cls, server) -> logging.Logger:
        """A logger of the server's own whose records go to its editor."""
        handler = cls(server)
        log = logging.getLogger(f"foretell.session{next(_sessions)}")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        server.editor_log, server.log = handler, log
        return log

    def detach(self) -> None:
        self.server.log.removeHandler(self)

    def bind(self) -> None:
        """Remember the event loop (called on it): records from other threads are sent there."""
        self.loop, self.loop_thread = asyncio.get_running_loop(), threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        kind = next((kind for level, kind in LEVELS if record.levelno >= level), types.MessageType.Log)
        params = types.LogMessageParams(type=kind, message=self.format(record))
        try:
            if self.loop is None or threading.get_ident() == self.loop_thread:
                self.server.window_log_message(params)
            elif not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.server.window_log_message, params)
        except Exception:  # the editor has gone: nothing to tell
            pass


def report_failure(log: logging.Logger, task: asyncio.Task) -> None:
    """Done-callback for background tasks: log what went wrong (cancelling is not wrong)."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("%s failed: %s: %s", task.get_name(), type(error).__name__, error, exc_info=error)
