"""The language server end to end over stdio, with pytest-lsp's Neovim and VS Code client
capability profiles."""

import asyncio
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from engine.corpus import corpus_from_text
from engine.plugins import get_backend
from engine.store import ModelStore
from tests.conftest import SMALL_TEXT

URI = "file:///tmp/notes.md"
OTHER_TEXT = "Penguins swim in cold water. Penguins eat fish. The penguin dives deep."


def train(name, text):
    cls = get_backend("ngram").cls
    ModelStore().save(name, cls.fit(corpus_from_text(text), cls.Options(order=3)))


@pytest_lsp.fixture(
    params=["neovim", "visual-studio-code"],
    config=ClientServerConfig(server_command=[sys.executable, "-m", "lsp_server"]),
)
async def client(lsp_client: LanguageClient, request, tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "journal.md").write_text("Octopuses have three hearts. Octopuses taste with their arms.\n" * 3)
    train("default", SMALL_TEXT)
    train("penguins", OTHER_TEXT)
    lsp_client.refreshes = 0

    @lsp_client.feature(types.WORKSPACE_SEMANTIC_TOKENS_REFRESH)
    def refresh(params):
        lsp_client.refreshes += 1

    options = {"foretell": {"surprisal": {"debounceMs": 0, "inlayHints": True, "diagnostics": True, "threshold": 5.0}}}
    lsp_client.initialize_result = await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(request.param),
            initialization_options=options,
            workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name="workspace")],
        )
    )
    yield
    await lsp_client.shutdown_session()


def open_doc(client, text, uri=URI, language="markdown", version=1):
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text))
    )


def end_of(text):
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1]))


def change_to(client, text, version, uri=URI):
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def complete(client, text, uri=URI):
    return await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=end_of(text))
    )


async def test_server_advertises_its_features(client: LanguageClient):
    caps = client.initialize_result.capabilities
    assert list(caps.completion_provider.trigger_characters) == [" "]
    assert caps.inline_completion_provider
    assert caps.hover_provider and caps.inlay_hint_provider
    assert list(caps.semantic_tokens_provider.legend.token_types) == ["foretellTop10", "foretellTop100", "foretellTop1000", "foretellRare"]
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    assert set(caps.execute_command_provider.commands) >= {"foretell.scoreDocument", "foretell.switchModel", "foretell.trainWorkspace"}


async def test_completion_of_the_next_word_and_of_a_partial_word(client: LanguageClient):
    text = "The cat sat on the "
    open_doc(client, text)
    result = await complete(client, text)
    assert result.is_incomplete and result.items[0].label == "mat"
    assert [i.sort_text for i in result.items] == sorted(i.sort_text for i in result.items)
    assert "bits" in result.items[0].detail
    assert result.items[0].text_edit.range.start == end_of(text)

    text2 = "The quick bro"
    change_to(client, text2, version=2)
    partial = await complete(client, text2)
    assert partial.items[0].label == "brown"
    edit = partial.items[0].text_edit
    assert (edit.range.start.character, edit.range.end.character, edit.new_text) == (10, 13, "brown")


async def test_completion_only_in_enabled_languages(client: LanguageClient):
    open_doc(client, "The cat sat on the ", uri="file:///tmp/x.py", language="python")
    assert await complete(client, "The cat sat on the ", uri="file:///tmp/x.py") is None


async def test_inline_completion_continues_the_phrase(client: LanguageClient):
    text = "The quick "
    open_doc(client, text)
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            position=end_of(text),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
    )
    assert result.items and result.items[0].insert_text.startswith("brown fox")


async def test_hover_shows_surprisal_and_expected_words(client: LanguageClient):
    open_doc(client, "The cat sat on the mat.")
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=0, character=20))
    )
    assert "**mat**" in hover.contents.value and "bits" in hover.contents.value and "rank" in hover.contents.value
    assert "expected:" in hover.contents.value and "`mat`" in hover.contents.value.split("expected:")[1]
    assert (hover.range.start.character, hover.range.end.character) == (19, 22)


def decode(data):
    line = char = 0
    for i in range(0, len(data), 5):
        dl, dc, length, kind, mods = data[i : i + 5]
        line += dl
        char = char + dc if dl == 0 else dc
        yield line, char, length, kind, mods


async def test_semantic_tokens_and_surprisal_request_agree(client: LanguageClient):
    text = "The cat sat on the mat.\nZebras dance, the dog sat."
    open_doc(client, text)
    tokens = await client.text_document_semantic_tokens_full_async(
        types.SemanticTokensParams(text_document=types.TextDocumentIdentifier(uri=URI))
    )
    decoded = list(decode(tokens.data))
    payload = await client.protocol.send_request_async("foretell/surprisal", {"textDocument": {"uri": URI}})
    words = payload["tokens"] if isinstance(payload, dict) else payload.tokens
    assert len(decoded) == len(words) == 14
    lines = text.split("\n")
    for (line, char, length, kind, mods), word in zip(decoded, words):
        token = word["token"] if isinstance(word, dict) else word.token
        rank = word["rank"] if isinstance(word, dict) else word.rank
        assert lines[line][char : char + length] == token
        assert kind == (0 if rank <= 10 else 1 if rank <= 100 else 2 if rank <= 1000 else 3)
        assert mods == (0 if token in corpus_from_text(SMALL_TEXT).vocab else 1)  # 1: out of the vocabulary


async def test_incremental_edits_keep_server_text_and_scores_in_step(client: LanguageClient):
    text = "The cat sat on the mat.\n\nThe dog sat on the log."
    open_doc(client, text)
    edits = [
        (types.Range(start=types.Position(line=0, character=4), end=types.Position(line=0, character=7)), "fox"),
        (types.Range(start=types.Position(line=2, character=23), end=types.Position(line=2, character=23)), " The end."),
    ]
    for version, (rng, new) in enumerate(edits, start=2):
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
                content_changes=[types.TextDocumentContentChangePartial(range=rng, text=new)],
            )
        )
    payload = await client.protocol.send_request_async("foretell/surprisal", {"textDocument": {"uri": URI}})
    tokens = [t["token"] if isinstance(t, dict) else t.token for t in (payload["tokens"] if isinstance(payload, dict) else payload.tokens)]
    assert tokens[:2] == ["The", "fox"] and tokens[-3:] == ["The", "end", "."]
    # A fresh document with the same text scores the same: the reuse of unchanged blocks is exact.
    final = "The fox sat on the mat.\n\nThe dog sat on the log. The end."
    open_doc(client, final, uri="file:///tmp/fresh.md")
    fresh = await client.protocol.send_request_async("foretell/surprisal", {"textDocument": {"uri": "file:///tmp/fresh.md"}})
    assert payload == fresh or [t.surprisal_bits for t in payload.tokens] == [t.surprisal_bits for t in fresh.tokens]


async def test_diagnostics_and_inlay_hints_for_surprising_words(client: LanguageClient):
    open_doc(client, "The cat sat on the zebra.")
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    diagnostics = client.diagnostics[URI]
    assert diagnostics and all(d.severity == types.DiagnosticSeverity.Hint and d.source == "foretell" for d in diagnostics)
    assert any(d.range.start.character == 19 for d in diagnostics)  # "zebra" is out of vocabulary
    hints = await client.text_document_inlay_hint_async(
        types.InlayHintParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            range=types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=25)),
        )
    )
    assert hints and any(h.position.character == 24 and h.label.endswith("b") for h in hints)


async def test_configuration_changes_and_invalid_values(client: LanguageClient):
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"foretell": {"maxSuggestions": "many"}}))
    await client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
    assert any("maxSuggestions" in m.message for m in client.messages)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"foretell": {"maxSuggestions": 2}}))
    text = "The "
    open_doc(client, text)
    result = await complete(client, text)
    assert len(result.items) == 2


async def test_each_keystroke_of_a_word_brings_new_words_first(client: LanguageClient):
    """Words offered at an earlier keystroke of the word, looked at and typed past, go after new
    ones (as Presage's selector does); asking again without typing gives the same list; a
    keystroke that comes at once after a list (not looked at) keeps it; another word starts
    afresh."""
    counts = {"cat": 10, "car": 9, "cab": 8, "cap": 7, "can": 6, "cow": 5, "dog": 4}
    train("animals", "".join(f"we saw a {word} .\n" * n for word, n in counts.items()))
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"foretell": {"model": "animals", "maxSuggestions": 5}}))
    text = "we saw a "
    open_doc(client, text)
    first = [i.label for i in (await complete(client, text)).items]
    assert first == ["cat", "car", "cab", "cap", "can"]
    change_to(client, text + "c", version=2)
    assert (await complete(client, text + "c")).items[0].label == "cat"  # typed straight on
    text = text + "cow .\n" + text
    change_to(client, text, version=3)
    assert [i.label for i in (await complete(client, text)).items] == first
    await asyncio.sleep(0.6)  # (the user reads the list, then types)
    change_to(client, text + "c", version=4)
    typed_on = [i.label for i in (await complete(client, text + "c")).items]
    assert typed_on[0] == "cow" and set(typed_on[1:]) < set(first)
    assert [i.label for i in (await complete(client, text + "c")).items] == typed_on


async def test_switching_models_changes_predictions(client: LanguageClient):
    text = "The "
    open_doc(client, text)
    before = await complete(client, text)
    switched = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="foretell.switchModel", arguments=["penguins"]))
    assert switched["model"] == "penguins" if isinstance(switched, dict) else switched.model == "penguins"
    after = await complete(client, text)
    assert after.items[0].label == "penguin" and before.items[0].label != "penguin"
    capabilities = client.initialize_result and client.protocol
    assert client.refreshes >= 1 or not capabilities
    with pytest.raises(Exception, match="no model named 'nope'"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="foretell.switchModel", arguments=["nope"]))
    still = await complete(client, text)
    assert still.items[0].label == "penguin"


async def test_score_document_command(client: LanguageClient):
    open_doc(client, "The cat sat on the mat.")
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="foretell.scoreDocument", arguments=[URI]))
    perplexity = result["perplexity"] if isinstance(result, dict) else result.perplexity
    assert 1 < perplexity < 100


async def test_cancelled_requests_get_the_lsp_error_and_the_rest_answer(client: LanguageClient):
    text = "The cat sat on the "
    open_doc(client, text)
    params = types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=URI), position=end_of(text))
    futures = [client.protocol.send_request(types.TEXT_DOCUMENT_COMPLETION, params, msg_id=f"c{i}") for i in range(30)]
    for i in range(0, 30, 3):
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=f"c{i}"))
    done = await asyncio.gather(*[asyncio.wrap_future(f) for f in futures], return_exceptions=True)
    for i, result in enumerate(done):
        if isinstance(result, types.CompletionList):
            assert result.items[0].label == "mat"
        else:  # only a cancelled request may fail, and with the LSP's RequestCancelled error
            assert i % 3 == 0 and getattr(result, "code", None) == types.LSPErrorCodes.RequestCancelled, result
    assert sum(isinstance(r, types.CompletionList) for r in done) >= 20
    # A slow request (the first analysis of a 20,000-word document) cancelled at once is answered
    # with RequestCancelled, and the server carries on.
    big = "file:///tmp/big.md"
    open_doc(client, SMALL_TEXT * 250, uri=big)
    slow = client.protocol.send_request("foretell/surprisal", {"textDocument": {"uri": big}}, msg_id="slow")
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="slow"))
    with pytest.raises(Exception) as cancelled:
        await asyncio.wrap_future(slow)
    assert getattr(cancelled.value, "code", None) == types.LSPErrorCodes.RequestCancelled
    assert (await complete(client, text)).items[0].label == "mat"


async def test_training_on_the_workspace_reports_progress_and_switches_model(client: LanguageClient):
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="foretell.trainWorkspace", arguments=["journal"])
    )
    documents = result["documents"] if isinstance(result, dict) else result.documents
    assert documents == 1
    reports = next(iter(client.progress_reports.values()))
    assert reports[0].kind == "begin" and reports[-1].kind == "end"
    text = "Octopuses have "
    open_doc(client, text)
    assert (await complete(client, text)).items[0].label == "three"


async def test_learning_on_save_predicts_the_new_words_and_forgetting_undoes_it(client: LanguageClient):
    caps = client.initialize_result.capabilities
    assert caps.text_document_sync.save is not None
    notes = "file:///tmp/kubernetes.md"
    text = "Kubernetes schedules pods. Kubernetes restarts pods. The pods run containers.\n"
    open_doc(client, text, uri=notes)
    probe = "The cat sat. Kubernetes "
    open_doc(client, probe)
    before = await complete(client, probe)
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=notes)))
    assert ModelStore().layer("default").documents() == []  # learning is off by default

    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"foretell": {"learning": {"enabled": True}}}))
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=notes)))
    for _ in range(100):
        learned = ModelStore().layer("default").documents()
        if learned:
            break
        await asyncio.sleep(0.05)
    assert [d["key"] for d in learned] == [notes]
    for _ in range(100):  # the model with it is built on the background lane; completions use the one before meanwhile
        after = await complete(client, probe)
        if after.items[0].label in ("schedules", "restarts"):
            break
        await asyncio.sleep(0.05)
    assert after.items[0].label in ("schedules", "restarts") and before.items[0].label not in ("schedules", "restarts")

    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="foretell.forgetDocument", arguments=[notes]))
    assert (result["forgotten"] if isinstance(result, dict) else result.forgotten) == [notes]
    assert ModelStore().layer("default").documents() == []
    again = await complete(client, probe)
    assert [i.label for i in again.items] == [i.label for i in before.items]


async def test_a_recurrent_model_learns_on_save_too(client: LanguageClient):
    rnn = get_backend("rnn").cls
    ModelStore().save("recurrent", rnn.fit(corpus_from_text(SMALL_TEXT), rnn.Options(epochs=1, hidden=16, embedding=16, layers=1)))
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="foretell.switchModel", arguments=["recurrent"]))
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"foretell": {"learning": {"enabled": True}}}))
    notes = "file:///tmp/kubernetes.md"
    open_doc(client, "Kubernetes schedules pods. Kubernetes restarts pods.\n", uri=notes)
    probe = "The Kub"
    open_doc(client, probe)
    assert not (await complete(client, probe)).items  # no word the model knows starts so
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=notes)))
    for _ in range(200):  # fine-tuned on the background lane; completions use the model before meanwhile
        labels = [i.label for i in (await complete(client, probe)).items]
        if labels:
            break
        await asyncio.sleep(0.05)
    assert labels == ["Kubernetes"] and [d["key"] for d in ModelStore().layer("recurrent").documents()] == [notes]
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="foretell.forgetDocument", arguments=[notes]))
    assert not (await complete(client, probe)).items


async def test_a_model_with_memory_reads_the_documents_opened_and_saved_before(client: LanguageClient):
    """A cache's completions in one document offer the words of the others the user wrote
    lately; a key file's words never come back so."""
    cache = get_backend("cache").cls
    ModelStore().save("recent", cache.fit(corpus_from_text(SMALL_TEXT + " The penguin swam. The password was zebra."), cache.Options()))
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="foretell.switchModel", arguments=["recent"]))
    probe = "The "
    open_doc(client, probe)
    before = [i.label for i in (await complete(client, probe)).items]
    open_doc(client, "zebra zebra zebra zebra zebra zebra.\n", uri="file:///tmp/.env", language="markdown")
    open_doc(client, "Notes on penguin colonies, penguin chicks, penguin diets and penguin dives.\n", uri="file:///tmp/penguins.md")
    for _ in range(100):  # read on the background lane; completion meanwhile uses the state kept before
        after = [i.label for i in (await complete(client, probe)).items]
        if after[0] == "penguin":
            break
        await asyncio.sleep(0.05)
    assert after[0] == "penguin" and before[0] != "penguin" and "zebra" not in after
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"foretell": {"history": {"enabled": False}}}))
    assert [i.label for i in (await complete(client, probe)).items] == before  # switched off: the document alone


async def test_incognito_and_exclusions_stop_learning_on_save(client: LanguageClient):
    """The editor's settings and the command line's switches (read at each save) both hold."""
    def configure(**values):
        settings = {"foretell": {"learning": {"enabled": True}, "exclude": ["drafts"], **values}}
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))

    async def save(uri):
        client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
        await complete(client, text, uri=uri)  # answered: the save has been looked at

    draft, diary, notes = "file:///tmp/drafts/plan.md", "file:///tmp/diary.md", "file:///tmp/kept.md"
    text = "Zanzibar plans are secret. Zanzibar trips are fun.\n"
    for uri in (draft, diary, notes):
        open_doc(client, text, uri=uri)
    configure()
    await save(draft)  # excluded by the editor's pattern
    ModelStore().set_incognito(True)  # `foretell incognito on` while the server runs
    await save(diary)
    ModelStore().set_incognito(False)
    configure(incognito=True)
    await save(diary)
    configure(incognito=False)
    await save(notes)
    for _ in range(100):
        learned = ModelStore().layer("default").documents()
        if learned:
            break
        await asyncio.sleep(0.05)
    assert [d["key"] for d in learned] == [notes]  # the others were refused when saved, never queued


async def test_completion_does_not_wait_for_the_analysis_of_a_large_document(client: LanguageClient):
    """The colours of a large document just opened are still being computed when the user
    types: the completion is answered first."""
    big = "file:///tmp/large.md"
    text = SMALL_TEXT * 400 + "\nThe cat sat on the "
    open_doc(client, text, uri=big)
    colours = asyncio.ensure_future(client.text_document_semantic_tokens_full_async(
        types.SemanticTokensParams(text_document=types.TextDocumentIdentifier(uri=big))
    ))
    await asyncio.sleep(0.05)  # the analysis has started
    result = await complete(client, text, uri=big)
    assert result.items[0].label == "mat"
    assert not colours.done()
    assert len((await colours).data) > 0


async def test_punctuation_after_a_space_attaches_to_the_word_before(client: LanguageClient):
    text = "The dog didn't mind "
    open_doc(client, text)
    result = await complete(client, text)
    assert result.items[0].label[0].isalnum()  # words first
    attached = [i for i in result.items if i.label == ";"]
    assert attached, [i.label for i in result.items]
    edit = attached[0].text_edit
    assert (edit.range.start.character, edit.range.end.character, edit.new_text) == (len(text) - 1, len(text), ";")
    assert attached[0].filter_text == " ;"


async def test_the_visible_range_is_coloured_before_the_whole_document(client: LanguageClient):
    big = "file:///tmp/visible.md"
    text = "The cat sat on the mat.\n\n" + SMALL_TEXT * 400
    open_doc(client, text, uri=big)
    ident = types.TextDocumentIdentifier(uri=big)
    shown = types.Range(start=types.Position(line=0, character=0), end=types.Position(line=1, character=0))
    visible = await client.text_document_semantic_tokens_range_async(types.SemanticTokensRangeParams(text_document=ident, range=shown))
    assert [(line, char, length) for line, char, length, _, _ in decode(visible.data)] == [(0, 0, 3), (0, 4, 3), (0, 8, 3), (0, 12, 2), (0, 15, 3), (0, 19, 3), (0, 22, 1)]
    whole = await client.text_document_semantic_tokens_full_async(types.SemanticTokensParams(text_document=ident))
    assert list(whole.data[: len(visible.data)]) == list(visible.data)
    refresh = client.initialize_result and client_refresh_supported(client)
    for _ in range(100):
        if client.refreshes or not refresh:
            break
        await asyncio.sleep(0.05)
    assert client.refreshes >= 1 or not refresh  # the rest followed: the editor is asked again


def client_refresh_supported(client) -> bool:
    caps = client.capabilities.workspace if client.capabilities else None
    return bool(caps and caps.semantic_tokens and caps.semantic_tokens.refresh_support)
