"""The language server: LSP requests in, engine calls out.

Model work runs off the event loop in two lanes (lsp_server.lanes): completion, inline
completion and hover on the interactive one, surprisal analysis in bounded steps on the
background one, so typing never waits for analysis. Every result is computed for a document
version; if the document has moved on by the time it is ready, it is dropped, and an analysis
that is overtaken stops early. Each document's latest analysis, finished or stopped, is the
base the next one reuses (engine.analysis): an edit costs what it changed.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import json
import itertools
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcInvalidRequest
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method
from pygls.protocol.json_rpc import RPCRequest

from engine import __version__
from engine.complete import prefix_index
from engine.default_model import load_model
from engine.errors import ForetellError
from engine.memory import release_freed_memory
from engine.store import ModelStore
from engine.analysis import DocumentAnalysis
from lsp_server.positions import PositionMap
from lsp_server.config import Settings, parse_settings
from lsp_server.features import surprisal
from lsp_server.features.completion import EarlierOffers
from lsp_server.features.history import RecentWriting
from lsp_server.encoded import Encoded, json_steps
from lsp_server.lanes import Lanes
from lsp_server.log import report_failure

LARGE_DOCUMENT = 1_000_000  # characters: past this only a window around what the editor shows is analysed
WINDOW_CHARS = 200_000  # the size of that window
VISIBLE_POLL = 0.005  # seconds between looks at an analysis under way for the visible range


class _Unreadable:
    """Stands in for a message that could not be read; pygls ignores it (no jsonrpc version)."""

    jsonrpc = None


class TolerantProtocol(LanguageServerProtocol):
    """Answers a request whose parameters cannot be read with InvalidParams instead of dropping
    it silently (which would leave the client waiting forever)."""

    def structure_message(self, data):
        try:
            return super().structure_message(data)
        except JsonRpcException:
            if isinstance(data, dict) and "id" in data and "method" in data:
                error = JsonRpcInvalidParams(f"invalid parameters for {data['method']}")
                self._send_response(data["id"], error=error.to_response_error())
            return _Unreadable()

    end_session = None  # set for a TCP connection: exit closes it instead of ending the process

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args):
        if self.end_session is None:
            yield from super().lsp_exit(*args)
            return
        if (user_handler := self.fm.features.get(types.EXIT)) is not None:
            yield user_handler, args, None
        self.end_session()

    def handle_message(self, message):
        """After ``shutdown`` a request gets InvalidRequest, as LSP says, not silence (which
        leaves the client waiting forever); notifications other than ``exit`` are dropped."""
        if self._shutdown and isinstance(message, RPCRequest):
            error = JsonRpcInvalidRequest(f"the server is shutting down; {message.method} is not answered")
            self._send_response(message.id, error=error.to_response_error())
            return
        super().handle_message(message)

    def _send_data(self, data):
        result = getattr(data, "result", None)
        if not isinstance(result, Encoded) or self.writer is None:
            return super()._send_data(data)
        body = f'{{"jsonrpc":"2.0","id":{json.dumps(data.id)},"result":{result.json}}}'.encode(self.CHARSET)
        header = f"Content-Length: {len(body)}\r\nContent-Type: {self.CONTENT_TYPE}; charset={self.CHARSET}\r\n\r\n" if self._include_headers else ""
        written = self.writer.write(header.encode(self.CHARSET) + body)
        if inspect.isawaitable(written):
            asyncio.ensure_future(written)


@dataclass
class Running:
    """An analysis under way: the document version, its future, and (once it has started) the
    analysis being built, which can already answer for what it has covered."""

    version: int
    window: tuple[int, int]  # (first character, length) analysed
    future: asyncio.Future | None = None
    analysis: DocumentAnalysis | None = None


class ForetellServer(LanguageServer):
    def __init__(self, model_name: str | None = None):
        super().__init__("foretell", __version__, protocol_cls=TolerantProtocol)
        self.settings = Settings(model=model_name)
        self.store = ModelStore()
        self.lanes = Lanes()
        self.recent = RecentWriting()  # history completion reads from (models with memory)
        self._model = None
        self._model_name = None
        self._model_lock = threading.Lock()
        self.analyses: dict[str, tuple[int, DocumentAnalysis]] = {}  # uri -> latest, finished or stopped
        self.last_used: dict[str, float] = {}  # uri -> when its analysis was last asked for
        self.windows: dict[str, int] = {}  # uri -> where a large document's analysed window starts
        self.timers: dict[str, asyncio.Task] = {}
        self.inflight: dict[str, Running] = {}
        self._posmaps: dict[str, PositionMap] = {}
        self.refresh_when_done: set[str] = set()  # documents whose colours were sent in part
        self.semantic: dict[str, tuple[str, object]] = {}  # uri -> (result id, token data) last sent
        self.offers: defaultdict[str, EarlierOffers] = defaultdict(EarlierOffers)  # uri -> what completion offered for the word being typed
        self._results = itertools.count(1)
        self.editor_log = None  # lsp_server.log.EditorLog, once attached
        self.log = logging.getLogger("foretell")  # the session's own, once attached

    # -- helpers -----------------------------------------------------------------------------
    async def interactive(self, fn, *args):
        """Model work the user is waiting for as they type."""
        return await self.lanes.interactive(fn, *args)

    async def background(self, fn, *args):
        """Model work that may wait for interactive requests (encoding results, training)."""
        return await self.lanes.background(fn, *args)

    async def encoded(self, head: str, items, tail: str = "") -> Encoded:
        """A large JSON result written on the background lane, a chunk of items a step."""
        return await asyncio.wrap_future(self.lanes.background_steps(json_steps(head, items, tail)))

    def model(self):
        """The configured model, loaded on first use (lane threads only)."""
        with self._model_lock:
            name = self.settings.model  # read once: a switch meanwhile must not take this model's place
            if self._model is None or self._model_name != name:
                self._model = load_model(self.store, name)
                self._model_name = name
            return self._model

    @property
    def loaded_model(self):
        """The model in use if it is loaded, else None (never loads: any thread)."""
        return self._model if self._model_name == self.settings.model else None

    def warm_model(self) -> None:
        """Load the model and build what the first completions need (its prefix index)."""
        prefix_index(self.model()).warm()

    def reload_model(self) -> None:
        """Load the model again on next use (another model was chosen)."""
        self._model = None

    def refresh_model(self) -> None:
        """Build the model again now, on the calling (background) lane, after it learned or
        forgot something; requests meanwhile keep the model they had, so no completion waits
        for the learned counts to be added and the model re-estimated."""
        name = self.settings.model
        fresh = load_model(self.store, name)
        prefix_index(fresh).warm()
        with self._model_lock:
            if self._model_name == name == self.settings.model:
                self._model = fresh
            else:
                self._model = None

    def tell(self, message: str, kind=types.MessageType.Warning) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"foretell: {message}"))

    def apply_settings(self, values) -> None:
        before = self.settings.model
        self.settings, problems = parse_settings(values, self.settings)
        for problem in problems:
            self.tell(problem)
        if self.settings.model != before:
            self.reload_model()

    def enabled(self, document) -> bool:
        return (document.language_id or "plaintext") in self.settings.languages

    def document(self, uri: str):
        """The open document, or None for one the client never opened."""
        return self.workspace.text_documents.get(uri)

    def _current(self, doc) -> DocumentAnalysis | None:
        self.last_used[doc.uri] = time.monotonic()
        latest = self.analyses.get(doc.uri)
        if latest and latest[0] == doc.version and latest[1].complete and latest[1].model is self._model \
                and latest[1].window_start == self._window(doc)[0]:
            return latest[1]
        return None

    def _window(self, doc) -> tuple[int, int]:
        """(first character, length) of what to analyse: all of a document up to LARGE_DOCUMENT,
        else the window around what the editor last showed."""
        if len(doc.source) <= LARGE_DOCUMENT:
            return 0, LARGE_DOCUMENT
        return self.windows.get(doc.uri, 0), WINDOW_CHARS

    def _running(self, doc) -> "Running":
        """The analysis of the document's current version under way, started if need be."""
        running = self.inflight.get(doc.uri)
        window = self._window(doc)
        if running is None or running.version != doc.version or running.window != window:
            latest = self.analyses.get(doc.uri)
            running = self._start_analysis(doc.uri, doc.version, doc.source, latest[1] if latest else None, window)
        return running

    async def analysis(self, doc) -> DocumentAnalysis | None:
        """The analysis of the document's current version (None if it moved on meanwhile).
        Requests for a version already being analysed wait for that work instead of redoing it."""
        current = self._current(doc)
        if current is not None:
            return current
        version = doc.version
        result = await asyncio.shield(self._running(doc).future)
        now = self.document(doc.uri)
        return result if result is not None and result.complete and now is not None and now.version == version else None

    async def visible_analysis(self, doc, start: int, end: int) -> DocumentAnalysis | None:
        """Characters ``start:end`` analysed, as soon as they are, ahead of the whole document:
        the rest follows in the background and the editor is asked to refresh its colours."""
        if len(doc.source) > LARGE_DOCUMENT:  # move the window to what the editor shows
            first = self._window(doc)[0]
            if not first <= start <= end <= first + WINDOW_CHARS:
                self.windows[doc.uri] = max(0, min(start - WINDOW_CHARS // 4, len(doc.source) - WINDOW_CHARS))
        current = self._current(doc)
        if current is not None:
            return current.view(start, end)
        running = self._running(doc)
        while not running.future.done():
            partial = running.analysis
            if partial is not None:
                partial.priority = (start, end)
                if partial.covers(start, end):
                    self.refresh_when_done.add(doc.uri)
                    return partial.view(start, end)
            await asyncio.wait([running.future], timeout=VISIBLE_POLL)
        result = await self.analysis(doc)
        return result.view(start, end) if result is not None else None

    def _start_analysis(self, uri: str, version: int, text: str, previous: DocumentAnalysis | None, window: tuple[int, int]) -> "Running":
        """An analysis on the background lane that stops once the document has moved on."""
        running = Running(version, window)

        def steps():
            running.analysis = DocumentAnalysis(self.model(), text, previous, max_chars=window[1], run=False, window_start=window[0])
            yield
            yield from running.analysis.steps()
            if previous is None:
                release_freed_memory()  # a fresh analysis's working memory (every position's features) goes back
            return running.analysis

        def overtaken() -> bool:
            current = self.document(uri)
            return current is None or current.version != version or self.inflight.get(uri, running) is not running

        self.inflight[uri] = running  # before its first step, which asks overtaken()
        running.future = asyncio.wrap_future(self.lanes.background_steps(steps(), overtaken, lambda: running.analysis))
        running.future.add_done_callback(lambda _: self._analysed(uri, running))
        return running

    def _analysed(self, uri: str, running: "Running") -> None:
        """Keep a finished or stopped analysis as the base of the next one."""
        if self.inflight.get(uri) is running:
            del self.inflight[uri]
        future = running.future
        if future.cancelled() or future.exception() is not None or future.result() is None:
            return
        kept = self.analyses.get(uri)
        if self.document(uri) is None or (kept is not None and kept[0] > running.version):
            return
        result = future.result()
        self.analyses[uri] = (running.version, result)
        self._keep_within_budget(uri)
        gc.freeze()  # long-lived analyses need not be walked by every collection while typing
        if result.complete and uri in self.refresh_when_done:
            self.refresh_when_done.discard(uri)
            self.refresh_colours()

    def refresh_colours(self) -> None:
        """Ask the editor for semantic tokens again, if it can be asked."""
        caps = self.client_capabilities.workspace
        if caps and caps.semantic_tokens and caps.semantic_tokens.refresh_support:
            self.workspace_semantic_tokens_refresh(None)

    def _keep_within_budget(self, keep: str) -> None:
        """Drop the analyses of the least recently used documents (never ``keep``'s) while all
        of them together hold more than the analysisMemoryMB setting; a dropped one is redone
        if its document is asked for again."""
        budget = self.settings.analysisMemoryMB << 20
        sizes = {uri: analysis.approx_bytes() for uri, (_, analysis) in self.analyses.items()}
        total = sum(sizes.values())
        for uri in sorted(sizes, key=lambda u: self.last_used.get(u, 0.0)):
            if total <= budget:
                break
            if uri != keep:
                self._forget_analysis(uri)
                total -= sizes[uri]

    def _forget_analysis(self, uri: str) -> None:
        self.analyses.pop(uri, None)
        self._posmaps.pop(uri, None)
        self.semantic.pop(uri, None)

    def closed(self, uri: str) -> None:
        """Let go of everything kept for a document the editor closed, and give the memory back."""
        self._forget_analysis(uri)
        self.recent.closed(uri)
        self.offers.pop(uri, None)
        self.last_used.pop(uri, None)
        self.windows.pop(uri, None)
        asyncio.ensure_future(self.background(release_memory))
        self.inflight.pop(uri, None)
        self.refresh_when_done.discard(uri)
        timer = self.timers.pop(uri, None)
        if timer:
            timer.cancel()

    def posmap(self, doc, analysis: DocumentAnalysis) -> PositionMap:
        """Positions in the text the analysis was made of (kept while that text is current)."""
        cached = self._posmaps.get(doc.uri)
        if cached is None or cached.text is not analysis.text:
            utf16 = self.workspace.position_encoding in (None, types.PositionEncodingKind.Utf16)
            cached = self._posmaps[doc.uri] = PositionMap(analysis.text, doc.position_codec.client_num_units, utf16)
        return cached

    def schedule_analysis(self, uri: str, delay: float | None = None) -> None:
        """Debounced re-analysis after an edit (at once for a document just opened: the editor
        asks for its colours next); publishes diagnostics when they are on."""
        old = self.timers.pop(uri, None)
        if old:
            old.cancel()
        wait = self.settings.surprisal.debounceMs / 1000 if delay is None else delay
        task = self.timers[uri] = asyncio.ensure_future(self._analyse_later(uri, wait))
        task.set_name(f"the analysis of {uri}")
        task.add_done_callback(functools.partial(report_failure, self.log))

    async def _analyse_later(self, uri: str, delay: float) -> None:
        await asyncio.sleep(delay)
        doc = self.document(uri)
        if doc is None or not self.enabled(doc):
            return
        try:
            analysis = await self.analysis(doc)
        except ForetellError as exc:
            self.tell(str(exc), types.MessageType.Error)
            return
        if analysis is None:
            return
        if self.settings.surprisal.diagnostics:
            threshold = self.settings.surprisal.threshold
            found = await self.background(surprisal.diagnostics, analysis, self.posmap(doc, analysis), threshold)
            self.publish(uri, found, doc.version)

    def remember_tokens(self, uri: str, data) -> str:
        result_id = str(next(self._results))
        self.semantic[uri] = (result_id, data)
        return result_id

    def publish(self, uri: str, diagnostics, version=None) -> None:
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))


def release_memory() -> None:
    """After a document closes: collect what it left (frozen objects too) and hand freed heap
    back to the system, so memory follows the open documents, not the ones ever opened."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    release_freed_memory()

