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
import gc
import itertools
import threading

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from engine import __version__
from engine.complete import prefix_index
from engine.default_model import load_model
from engine.errors import ForetellError
from engine.store import ModelStore
from engine.analysis import DocumentAnalysis
from lsp_server.positions import PositionMap
from lsp_server.config import Settings, parse_settings
from lsp_server.features import surprisal
from lsp_server.lanes import Lanes

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
        self.lanes = Lanes()
        self._model = None
        self._model_name = None
        self._model_lock = threading.Lock()
        self.analyses: dict[str, tuple[int, DocumentAnalysis]] = {}  # uri -> latest, finished or stopped
        self.timers: dict[str, asyncio.Task] = {}
        self.inflight: dict[str, tuple[int, asyncio.Future]] = {}
        self.semantic: dict[str, tuple[str, object]] = {}  # uri -> (result id, token data) last sent
        self._results = itertools.count(1)

    # -- helpers -----------------------------------------------------------------------------
    async def interactive(self, fn, *args):
        """Model work the user is waiting for as they type."""
        return await self.lanes.interactive(fn, *args)

    async def background(self, fn, *args):
        """Model work that may wait for interactive requests (encoding results, training)."""
        return await self.lanes.background(fn, *args)

    def model(self):
        """The configured model, loaded on first use (lane threads only)."""
        with self._model_lock:
            if self._model is None or self._model_name != self.settings.model:
                self._model = load_model(self.store, self.settings.model)
                self._model_name = self.settings.model
            return self._model

    def warm_model(self) -> None:
        """Load the model and build what the first completion needs (its prefix index)."""
        prefix_index(self.model())

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
            self.reload_model()

    def enabled(self, document) -> bool:
        return (document.language_id or "plaintext") in self.settings.languages

    def document(self, uri: str):
        """The open document, or None for one the client never opened."""
        return self.workspace.text_documents.get(uri)

    async def analysis(self, doc) -> DocumentAnalysis | None:
        """The analysis of the document's current version (None if it moved on meanwhile).
        Requests for a version already being analysed wait for that work instead of redoing it."""
        version, uri = doc.version, doc.uri
        latest = self.analyses.get(uri)
        if latest and latest[0] == version and latest[1].complete and latest[1].model is self._model:
            return latest[1]
        running = self.inflight.get(uri)
        if running is None or running[0] != version:
            running = self.inflight[uri] = (version, self._start_analysis(uri, version, doc.source, latest[1] if latest else None))
        result = await asyncio.shield(running[1])
        if self.inflight.get(uri) is running:
            del self.inflight[uri]
        if result is None:
            return None
        kept = self.analyses.get(uri)
        if self.document(uri) is not None and (kept is None or kept[0] <= version):
            self.analyses[uri] = (version, result)  # finished or not, the base of the next one
            gc.freeze()  # long-lived analyses need not be walked by every collection while typing
        return result if result.complete and self.document(uri) is not None and self.document(uri).version == version else None

    def _start_analysis(self, uri: str, version: int, text: str, previous: DocumentAnalysis | None) -> asyncio.Future:
        """An analysis on the background lane that stops once the document has moved on."""
        made: list[DocumentAnalysis] = []

        def steps():
            model = self.model()
            made.append(DocumentAnalysis(model, text, previous, run=False))
            yield
            yield from made[0].steps()

        def overtaken() -> bool:
            current = self.document(uri)
            return current is None or current.version != version

        return asyncio.wrap_future(self.lanes.background_steps(steps(), lambda: made[0] if made else None, overtaken))

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
            found = await self.background(surprisal.diagnostics, analysis, self.posmap(doc, analysis), threshold)
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
