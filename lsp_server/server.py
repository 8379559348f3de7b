"""The language server: LSP requests in, engine calls out.

Model work runs on one worker thread, never on the event loop. Every result is computed for a
document version; if the document has moved on by the time it is ready, it is dropped.
Surprisal analysis is debounced while the user types and reuses what an edit did not touch.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
from concurrent.futures import ThreadPoolExecutor

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from engine import __version__
from engine.default_model import load_model
from engine.errors import ForetellError
from engine.store import ModelStore
from engine.analysis import DocumentAnalysis
from lsp_server.positions import PositionMap
from lsp_server.config import Settings, parse_settings
from lsp_server.features import surprisal

SURPRISAL_METHOD = "foretell/surprisal"
COMMANDS = ("foretell.scoreDocument", "foretell.switchModel", "foretell.trainWorkspace", "foretell.forgetDocument")


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


class ForetellServer(LanguageServer):
    def __init__(self, model_name: str | None = None):
        super().__init__("foretell", __version__, protocol_cls=TolerantProtocol)
        self.settings = Settings(model=model_name)
        self.store = ModelStore()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foretell-model")
        self._model = None
        self._model_name = None
        self.analyses: dict[str, tuple[int, DocumentAnalysis]] = {}
        self.timers: dict[str, asyncio.Task] = {}
        self.inflight: dict[str, tuple[int, asyncio.Future]] = {}
        self.semantic: dict[str, tuple[str, object]] = {}  # uri -> (result id, token data) last sent
        self._results = itertools.count(1)

    # -- helpers -----------------------------------------------------------------------------
    async def in_worker(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.worker, functools.partial(fn, *args))

    def model(self):
        """The configured model, loaded on first use (worker thread only)."""
        if self._model is None or self._model_name != self.settings.model:
            self._model = load_model(self.store, self.settings.model)
            self._model_name = self.settings.model
            self.analyses.clear()
        return self._model

    def reload_model(self) -> None:
        """Load the model again on next use (it learned or forgot something)."""
        self._model = None

    def tell(self, message: str, kind=types.MessageType.Warning) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"foretell: {message}"))

    def apply_settings(self, values) -> None:
        before = self.settings.model
        self.settings, problems = parse_settings(values, self.settings)
        for problem in problems:
            self.tell(problem)
        if self.settings.model != before:
            self._model = None

    def enabled(self, document) -> bool:
        return (document.language_id or "plaintext") in self.settings.languages

    def document(self, uri: str):
        """The open document, or None for one the client never opened."""
        return self.workspace.text_documents.get(uri)

    async def analysis(self, doc) -> DocumentAnalysis | None:
        """The analysis of the document's current version (None if it moved on meanwhile).
        Requests for a version already being analysed wait for that work instead of redoing it."""
        version = doc.version
        cached = self.analyses.get(doc.uri)
        if cached and cached[0] == version:
            return cached[1]
        running = self.inflight.get(doc.uri)
        if running is None or running[0] != version:
            previous = cached[1] if cached else None
            text = doc.source
            future = asyncio.ensure_future(self.in_worker(lambda: DocumentAnalysis(self.model(), text, previous)))
            running = self.inflight[doc.uri] = (version, future)
        result = await asyncio.shield(running[1])
        if self.inflight.get(doc.uri) is running:
            del self.inflight[doc.uri]
        current = self.document(doc.uri)
        if current is None or current.version != version:
            return None
        self.analyses[doc.uri] = (version, result)
        gc.freeze()  # long-lived analyses need not be walked by every collection while typing
        return result

    def posmap(self, doc, analysis: DocumentAnalysis) -> PositionMap:
        cached = getattr(analysis, "_posmap", None)
        if cached is None:
            utf16 = self.workspace.position_encoding in (None, types.PositionEncodingKind.Utf16)
            cached = analysis._posmap = PositionMap(analysis.text, doc.position_codec.client_num_units, utf16)
        return cached

    def schedule_analysis(self, uri: str, delay: float | None = None) -> None:
        """Debounced re-analysis after an edit (at once for a document just opened: the editor
        asks for its colours next); publishes diagnostics when they are on."""
        old = self.timers.pop(uri, None)
        if old:
            old.cancel()
        wait = self.settings.surprisal.debounceMs / 1000 if delay is None else delay
        self.timers[uri] = asyncio.ensure_future(self._analyse_later(uri, wait))

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
            found = await self.in_worker(surprisal.diagnostics, analysis, self.posmap(doc, analysis), threshold)
            self.publish(uri, found, doc.version)

    def remember_tokens(self, uri: str, data) -> str:
        result_id = str(next(self._results))
        self.semantic[uri] = (result_id, data)
        return result_id

    def publish(self, uri: str, diagnostics, version=None) -> None:
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))


def create_server(model_name: str | None = None) -> ForetellServer:
    server = ForetellServer(model_name)
    from lsp_server import handlers

    handlers.register(server)
    return server
