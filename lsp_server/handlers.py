"""LSP method handlers, each a few lines from request to feature function, and the server that
answers with them (``create_server``)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np

from lsprotocol import types
from pygls.uris import to_fs_path

from engine.corpus import build_corpus
from engine.errors import ForetellError
from engine.train import train_and_save
from lsp_server.features import completion, learning, surprisal
from lsp_server.positions import offset_at
from lsp_server.log import EditorLog
from lsp_server.server import ForetellServer

SURPRISAL_METHOD = "foretell/surprisal"
COMMANDS = ("foretell.scoreDocument", "foretell.switchModel", "foretell.trainWorkspace", "foretell.forgetDocument")

_FEATURES: list[tuple[str, object, object]] = []  # (method, options, handler)
_COMMANDS: list[tuple[str, object]] = []


def feature(method: str, options=None):
    """Mark a module-level function as the handler of ``method`` (registered by create_server)."""
    def add(handler):
        _FEATURES.append((method, options, handler))
        return handler
    return add


def command(name: str):
    def add(handler):
        _COMMANDS.append((name, handler))
        return handler
    return add


@feature(types.INITIALIZE)
def initialize(ls: ForetellServer, params: types.InitializeParams):
    if ls.editor_log is not None:
        ls.editor_log.bind()
    options = params.initialization_options
    if isinstance(options, dict):
        ls.apply_settings(options.get("foretell", options))


@feature(types.INITIALIZED)
async def initialized(ls: ForetellServer, params: types.InitializedParams):
    try:  # load the model now, not on the first key the user types
        await ls.background(ls.warm_model)
    except ForetellError as exc:
        ls.tell(str(exc), types.MessageType.Error)


@feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: ForetellServer, params: types.DidChangeConfigurationParams):
    settings = params.settings
    if isinstance(settings, dict) and "foretell" in settings:
        ls.apply_settings(settings["foretell"])
        _reanalyse_all(ls)


@feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: ForetellServer, params: types.DidOpenTextDocumentParams):
    ls.schedule_analysis(params.text_document.uri, delay=0)
    _remember(ls, params.text_document.uri)


@feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: ForetellServer, params: types.DidChangeTextDocumentParams):
    ls.schedule_analysis(params.text_document.uri)


@feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
async def did_save(ls: ForetellServer, params: types.DidSaveTextDocumentParams):
    _remember(ls, params.text_document.uri)
    doc = ls.document(params.text_document.uri)
    if doc is None or not ls.settings.learning.enabled or not ls.enabled(doc) or not learning.may_learn(ls, doc.uri):
        return  # decided now: a save made while incognito is never learned later
    try:
        entry = await ls.background(learning.learn_document, ls, doc.uri, doc.source)
    except ForetellError as exc:
        ls.tell(f"could not learn {Path(to_fs_path(doc.uri) or doc.uri).name}: {exc}")
        return
    if entry is not None:
        _reanalyse_all(ls)


@feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: ForetellServer, params: types.DidCloseTextDocumentParams):
    uri = params.text_document.uri
    ls.closed(uri)
    ls.publish(uri, [])


def _remember(ls: ForetellServer, uri: str) -> None:
    """The document's text joins the history completion reads from (lsp_server.features.history),
    if the server may learn from it; the document's own start state is brought up to date."""
    doc = ls.document(uri)
    if doc is None or not ls.enabled(doc) or not ls.settings.history.enabled:
        return
    if learning.may_learn(ls, uri):
        ls.recent.remember(uri, doc.source)
    _refresh_history(ls, uri)


def _history_state(ls: ForetellServer, model, uri: str):
    """The state completion reads ``uri``'s context from (None: the model's initial state)."""
    return ls.recent.kept(model, uri) if ls.settings.history.enabled else None


def _refresh_history(ls: ForetellServer, uri: str) -> None:
    """Bring ``uri``'s start state up to date on the background lane, if it is behind the
    history: completion reads from the one kept meanwhile and never waits for it."""
    async def refresh():
        try:
            await ls.background(ls.recent.refresh, ls.model, uri)
        except ForetellError:
            pass  # the model does not load: completion says so itself
    if ls.settings.history.enabled and ls.recent.needs_refresh(uri, ls.loaded_model):
        asyncio.ensure_future(refresh())


@feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[" "]))
async def on_completion(ls: ForetellServer, params: types.CompletionParams):
    doc = ls.document(params.text_document.uri)
    if doc is None or not ls.enabled(doc):
        return None
    version, offset = doc.version, offset_at(doc, params.position)
    text_before = doc.source[:offset]
    earlier = ls.offers[doc.uri]
    def complete():
        model = ls.model()
        return completion.completion_list(model, text_before, params.position, ls.settings.maxSuggestions, doc.position_codec.client_num_units,
                                          _history_state(ls, model, doc.uri), earlier)
    result, shown = await ls.interactive(complete)
    _refresh_history(ls, doc.uri)
    if doc.version != version:
        return types.CompletionList(is_incomplete=True, items=[])
    earlier.sent(shown)
    return result


@feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def on_inline_completion(ls: ForetellServer, params: types.InlineCompletionParams):
    doc = ls.document(params.text_document.uri)
    inline = ls.settings.inlineCompletion
    if doc is None or not ls.enabled(doc) or not inline.enabled:
        return None
    version, offset = doc.version, offset_at(doc, params.position)
    text_before = doc.source[:offset]
    def continue_phrase():
        model = ls.model()
        return completion.continuation(model, text_before, inline.maxWords, inline.minProbability, _history_state(ls, model, doc.uri))
    text = await ls.interactive(continue_phrase)
    _refresh_history(ls, doc.uri)
    if not text or doc.version != version:
        return types.InlineCompletionList(items=[])
    here = types.Range(start=params.position, end=params.position)
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=text, range=here)])


@feature(types.TEXT_DOCUMENT_HOVER)
async def on_hover(ls: ForetellServer, params: types.HoverParams):
    doc = ls.document(params.text_document.uri)
    if doc is None or not ls.enabled(doc):
        return None
    analysis = await ls.analysis(doc)
    if analysis is None:
        return None
    index = analysis.token_at(offset_at(doc, params.position))
    if index is None:
        return None
    return await _while_open(ls, doc, ls.interactive(surprisal.hover, analysis, ls.posmap(doc, analysis), index))


@feature(types.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL, surprisal.LEGEND)
async def on_semantic_tokens(ls: ForetellServer, params: types.SemanticTokensParams):
    data = await _token_data(ls, params.text_document.uri)
    if data is None:
        return None
    return await _all_tokens(ls, params.text_document.uri, data)


@feature(types.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL_DELTA, surprisal.LEGEND)
async def on_semantic_tokens_delta(ls: ForetellServer, params: types.SemanticTokensDeltaParams):
    uri = params.text_document.uri
    previous = ls.semantic.get(uri)
    data = await _token_data(ls, uri)
    if data is None:
        return None
    if previous is None or previous[0] != params.previous_result_id:
        return await _all_tokens(ls, uri, data)
    return types.SemanticTokensDelta(edits=surprisal.token_edits(previous[1], data), result_id=ls.remember_tokens(uri, data))


@feature(types.TEXT_DOCUMENT_SEMANTIC_TOKENS_RANGE, surprisal.LEGEND)
async def on_semantic_tokens_range(ls: ForetellServer, params: types.SemanticTokensRangeParams):
    """What the editor shows, ahead of the whole document (which then asks for a refresh)."""
    doc = ls.document(params.text_document.uri)
    if doc is None or not ls.enabled(doc) or not ls.settings.surprisal.semanticTokens:
        return types.SemanticTokens(data=[])
    start, end = offset_at(doc, params.range.start), offset_at(doc, params.range.end)
    analysis = await ls.visible_analysis(doc, start, end)
    if analysis is None:
        return None
    data = await _while_open(ls, doc, ls.background(surprisal.semantic_token_data, analysis, ls.posmap(doc, analysis)))
    return None if data is None else types.SemanticTokens(data=data.tolist())


@feature(types.TEXT_DOCUMENT_INLAY_HINT)
async def on_inlay_hint(ls: ForetellServer, params: types.InlayHintParams):
    doc = ls.document(params.text_document.uri)
    if doc is None or not ls.enabled(doc) or not ls.settings.surprisal.inlayHints:
        return []
    analysis = await ls.analysis(doc)
    if analysis is None:
        return None
    start, end = offset_at(doc, params.range.start), offset_at(doc, params.range.end)
    return await _while_open(ls, doc, ls.background(surprisal.inlay_hints, analysis, ls.posmap(doc, analysis), ls.settings.surprisal.threshold, start, end))


@feature(SURPRISAL_METHOD)
async def on_surprisal(ls: ForetellServer, params):
    uri = _uri_of(params)
    doc = ls.document(uri) if uri else None
    if doc is None:
        raise ForetellError(f"{SURPRISAL_METHOD}: no open document {uri!r}")
    analysis = await ls.analysis(doc)
    if analysis is None:
        return None
    payload = await ls.background(surprisal.surprisal_payload, analysis, ls.posmap(doc, analysis))
    return await _while_open(ls, doc, ls.encoded('{"tokens":', payload["tokens"], f',"perplexity":{json.dumps(payload["perplexity"])}}}'))


@command(COMMANDS[0])
async def score_document(ls: ForetellServer, *args):
    doc = ls.document(args[0]) if args and isinstance(args[0], str) else None
    if doc is None:
        raise ForetellError("scoreDocument needs the URI of an open document")
    analysis = await ls.analysis(doc)
    if analysis is None:
        return None
    result = {"uri": doc.uri, "perplexity": analysis.perplexity, "tokens": len(analysis.bits), "model": analysis.model.model_name}
    ls.tell(f"{Path(to_fs_path(doc.uri) or doc.uri).name}: perplexity {result['perplexity']:.1f} over {result['tokens']:,} tokens", types.MessageType.Info)
    return result


@command(COMMANDS[1])
async def switch_model(ls: ForetellServer, *args):
    name = _text_argument(args, "switchModel needs a model name")
    previous = ls.settings
    ls.apply_settings({"model": name})
    try:
        model = await ls.background(ls.model)
    except ForetellError:
        ls.settings = previous
        ls.reload_model()
        raise
    for uri in list(ls.workspace.text_documents):
        ls.schedule_analysis(uri)
    ls.refresh_colours()
    return {"model": name, "backend": model.name, "vocabulary": len(model.vocab)}


@command(COMMANDS[2])
async def train_workspace(ls: ForetellServer, *args):
    name = args[0] if args and isinstance(args[0], str) else "workspace"
    folders = [to_fs_path(f.uri) for f in (ls.workspace.folders or {}).values()] or ([ls.workspace.root_path] if ls.workspace.root_path else [])
    if not folders:
        raise ForetellError("trainWorkspace needs a workspace folder")
    token = f"foretell-train-{time.monotonic_ns()}"
    await ls.work_done_progress.create_async(token)
    ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=f"foretell: training {name!r}", percentage=0, cancellable=False))

    def progress(done, total):
        ls.work_done_progress.report(token, types.WorkDoneProgressReport(message="reading documents", percentage=int(90 * done / max(total, 1))))

    try:
        summary = await ls.background(_train, ls, folders, name, progress)
    finally:
        ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message="done"))
    await switch_model(ls, name)
    return summary


@command(COMMANDS[3])
async def forget_document(ls: ForetellServer, *args):
    uri = _text_argument(args, "forgetDocument needs the document's URI")
    gone = await ls.background(learning.forget_document, ls, uri)
    _reanalyse_all(ls)
    return {"forgotten": [g["key"] for g in gone]}


def _text_argument(args, needs: str) -> str:
    """A command's first argument, which must be a non-empty string (else ``needs`` says why)."""
    if not args or not isinstance(args[0], str) or not args[0]:
        raise ForetellError(needs)
    return args[0]


def _reanalyse_all(ls: ForetellServer) -> None:
    for uri in list(ls.workspace.text_documents):
        ls.schedule_analysis(uri, delay=0)
    ls.refresh_colours()


async def _token_data(ls: ForetellServer, uri: str):
    doc = ls.document(uri)
    if doc is None or not ls.enabled(doc) or not ls.settings.surprisal.semanticTokens:
        return np.zeros(0, dtype=np.int64)
    analysis = await ls.analysis(doc)
    if analysis is None:
        return None
    return await _while_open(ls, doc, ls.background(surprisal.semantic_token_data, analysis, ls.posmap(doc, analysis)))


async def _all_tokens(ls: ForetellServer, uri: str, data):
    doc = ls.document(uri)
    if doc is None:  # never opened (or just closed): nothing to colour, nothing to remember
        return types.SemanticTokens(data=[])
    result_id = ls.remember_tokens(uri, data)
    return await _while_open(ls, doc, ls.encoded(f'{{"resultId":{json.dumps(result_id)},"data":', data.tolist(), "}"))


async def _while_open(ls: ForetellServer, doc, work):
    """What ``work`` gives, or None if the document was closed meanwhile: a result for a
    document the editor no longer has is dropped, not sent."""
    result = await work
    return result if doc is not None and ls.document(doc.uri) is doc else None


def _train(ls: ForetellServer, folders, name, progress):
    corpus = build_corpus(folders, progress=progress, exclude=learning.exclusions(ls))
    model = train_and_save(ls.store, name, corpus)
    return {"model": name, "documents": corpus.summary["documents"], "tokens": corpus.summary["tokens"], "vocabulary": len(model.vocab)}


def _uri_of(params) -> str | None:
    if isinstance(params, dict):
        doc = params.get("textDocument")
    else:
        doc = getattr(params, "textDocument", None) or getattr(params, "text_document", None)
    if doc is None:
        return None
    return getattr(doc, "uri", None) or (doc.get("uri") if isinstance(doc, dict) else None)


def create_server(model_name: str | None = None) -> ForetellServer:
    """The server with every handler above registered, logging to the editor's output."""
    server = ForetellServer(model_name)
    for method, options, handler in _FEATURES:
        server.feature(method, options)(handler)
    for name, handler in _COMMANDS:
        server.command(name)(handler)
    EditorLog.attach(server)
    return server
