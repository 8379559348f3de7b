"""The language server under hostile traffic: it answers every request, stays up, and a normal
completion afterwards is correct."""

import pytest

from engine.corpus import corpus_from_text
from engine.plugins import get_backend
from engine.store import ModelStore
from tests.conftest import SMALL_TEXT
from tests.lsp_raw import RawServer

URI = "file:///tmp/hostile.md"
TEXT = "The cat sat on the "


@pytest.fixture
def server():
    cls = get_backend("ngram").cls
    ModelStore().save("default", cls.fit(corpus_from_text(SMALL_TEXT), cls.Options(order=3)))
    s = RawServer()
    s.initialize({"foretell": {"surprisal": {"debounceMs": 0, "diagnostics": True}}})
    s.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "markdown", "version": 1, "text": TEXT}})
    yield s
    s.close()


def completion(server, uri=URI, line=0, character=len(TEXT)):
    return server.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}})


def still_correct(server):
    result = completion(server)["result"]
    assert result["items"][0]["label"] == "mat"
    assert server.proc.poll() is None


def test_bodies_that_are_not_json_and_unknown_methods(server):
    server.write_body(b"{this is not json")
    server.write_body(b"\xff\xfe\x00garbage")
    unknown = server.request("foretell/doesNotExist", {})
    assert unknown["error"]["code"] == -32601  # method not found
    server.notify("foretell/unknownNotification", {"x": 1})
    still_correct(server)


def test_wrong_parameter_types(server):
    for params in ({"textDocument": "nope"}, {"textDocument": {"uri": 5}, "position": "here"}, None, [1, 2, 3]):
        reply = server.request("textDocument/completion", params)
        assert "error" in reply or reply.get("result") is None
    reply = server.request("foretell/surprisal", {"textDocument": {"uri": 42}})
    assert "error" in reply
    reply = server.request("workspace/executeCommand", {"command": "foretell.switchModel", "arguments": [{"not": "a name"}]})
    assert "error" in reply
    still_correct(server)


def test_positions_past_the_end_and_documents_never_opened(server):
    for line, character in ((0, 10_000), (500, 0), (500, 500)):
        reply = completion(server, line=line, character=character)
        assert "result" in reply
    hover = server.request("textDocument/hover", {"textDocument": {"uri": URI}, "position": {"line": 99, "character": 99}})
    assert "result" in hover
    never = "file:///tmp/never-opened.md"
    assert completion(server, uri=never)["result"] is None
    assert server.request("textDocument/semanticTokens/full", {"textDocument": {"uri": never}})["result"]["data"] == []
    assert "error" in server.request("foretell/surprisal", {"textDocument": {"uri": never}})
    still_correct(server)


def test_a_five_megabyte_single_line_document(server):
    big = "file:///tmp/huge.md"
    line = ("The cat sat on the mat and the dog sat on the log " * 100_000)[:5_000_000]
    server.notify("textDocument/didOpen", {"textDocument": {"uri": big, "languageId": "markdown", "version": 1, "text": line}})
    result = completion(server, uri=big, character=len(line))["result"]
    assert result is not None and result["items"]
    tokens = server.request("textDocument/semanticTokens/full", {"textDocument": {"uri": big}})
    assert "result" in tokens
    still_correct(server)


def test_three_hundred_edits_and_completions_without_waiting_a_third_cancelled(server):
    text, ids = TEXT, []
    for version in range(2, 302):
        pos = {"line": 0, "character": len(text)}
        text += "x" if version % 2 else " "
        server.notify("textDocument/didChange", {"textDocument": {"uri": URI, "version": version}, "contentChanges": [{"range": {"start": pos, "end": pos}, "text": text[-1]}]})
        ids.append(completion_id := server.request("textDocument/completion", {"textDocument": {"uri": URI}, "position": {"line": 0, "character": len(text)}}, wait=False))
        if version % 3 == 0:
            server.notify("$/cancelRequest", {"id": completion_id})
    replies = [server.response(i) for i in ids]
    assert len(replies) == 300
    for i, reply in zip(ids, replies):
        assert "result" in reply or reply["error"]["code"] == -32800  # RequestCancelled
    # Back to the original text, and a normal completion is right.
    server.notify("textDocument/didChange", {"textDocument": {"uri": URI, "version": 400}, "contentChanges": [{"text": TEXT}]})
    still_correct(server)


BROKEN_PLUGIN = '''
"""A third-party backend whose analysis fails with an error nobody planned for."""
from engine.hookspecs import hookimpl
from foretell_unigram import Unigram


class Broken(Unigram):
    """Unigram frequencies whose document analysis fails."""

    name = "broken"

    def token_stats_from(self, ids, state):
        raise RuntimeError("kaput in the analysis")


@hookimpl
def register_backends(register):
    register(Broken)
'''


def test_an_unexpected_error_in_a_background_analysis_reaches_the_editor_log(tmp_path):
    """A debounced analysis is work no request waits for: its failure is logged to the editor
    (window/logMessage) instead of disappearing, and completion keeps working."""
    import os

    from tests.conftest import run_cli
    from tests.test_plugins import install_fake_distribution

    env = install_fake_distribution(tmp_path)
    (tmp_path / "foretell_broken.py").write_text(BROKEN_PLUGIN)
    info = tmp_path / "foretell_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: foretell-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[foretell]\nbroken = foretell_broken\n")
    (tmp_path / "c.txt").write_text(SMALL_TEXT)
    run_cli("train", "--backend", "broken", "--name", "default", str(tmp_path / "c.txt"), env=env)
    s = RawServer(env={**os.environ, **env})
    try:
        s.initialize({"foretell": {"surprisal": {"debounceMs": 0}}})
        s.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "markdown", "version": 1, "text": TEXT}})
        logged = s.notification("window/logMessage", lambda p: "kaput" in p["message"])
        assert logged["type"] == 1 and "analysis" in logged["message"]
        assert completion(s)["result"]["items"]
    finally:
        s.close()


def test_requests_after_shutdown_get_invalid_request(server):
    assert server.request("shutdown", None).get("error") is None
    answer = completion(server)
    assert answer["error"]["code"] == -32600 and "shutting down" in answer["error"]["message"]
    server.notify("exit", None)
    assert server.proc.wait(timeout=10) == 0


def test_a_document_closed_while_its_analysis_runs_gets_no_result(server):
    big = "file:///tmp/big.md"
    text = (SMALL_TEXT + "\n") * 400
    server.notify("textDocument/didOpen", {"textDocument": {"uri": big, "languageId": "markdown", "version": 1, "text": text}})
    assert server.request("foretell/surprisal", {"textDocument": {"uri": big}})["result"]["tokens"]
    asked = server.request("foretell/surprisal", {"textDocument": {"uri": big}}, wait=False)  # analysed: only the answer is built
    server.notify("textDocument/didClose", {"textDocument": {"uri": big}})
    answer = server.response(asked)
    assert answer.get("result") is None and "error" not in answer
    still_correct(server)


def test_tcp_connections_are_separate_sessions():
    """Two clients at once over TCP: each sees only its own documents and answers; a silent
    connection receives nothing; a client that exits leaves the others and the listener up."""
    import queue
    import socket
    import subprocess
    import sys

    from tests.lsp_raw import RawTcpClient

    cls = get_backend("ngram").cls
    ModelStore().save("default", cls.fit(corpus_from_text(SMALL_TEXT), cls.Options(order=3)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", "from engine.cli import main; main()", "serve", "--tcp", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    clients = []
    try:
        assert "listening" in proc.stderr.readline().decode()
        a, silent, b = (RawTcpClient(port) for _ in range(3))
        clients += [a, silent, b]
        a.initialize({"foretell": {"surprisal": {"debounceMs": 0}}})
        a.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "markdown", "version": 1, "text": "Secret words of A."}})
        b.initialize()
        assert "no open document" in b.request("foretell/surprisal", {"textDocument": {"uri": URI}})["error"]["message"]
        answer = a.request("foretell/surprisal", {"textDocument": {"uri": URI}})
        assert [t["token"] for t in answer["result"]["tokens"]][:2] == ["Secret", "words"]
        with pytest.raises(queue.Empty):
            silent.messages.get(timeout=1.0)  # nothing of A's reaches a connection that said nothing
        assert "Secret" not in json_of(b)
        b.request("shutdown", None)
        b.notify("exit", None)
        assert completion(a, line=0, character=7)["result"] is not None  # A's session goes on
        c = RawTcpClient(port)
        clients.append(c)
        assert c.initialize()["result"]["capabilities"]  # and the listener takes new clients
        assert proc.poll() is None
    finally:
        for client in clients:
            client.close()
        proc.kill()


def json_of(client) -> str:
    """Everything a client has received so far, as text."""
    import json
    import queue

    seen = []
    while True:
        try:
            seen.append(client.messages.get_nowait())
        except queue.Empty:
            return json.dumps(seen) + json.dumps(list(client.responses.values()))


def server_rss_mb(server) -> float:
    status = open(f"/proc/{server.proc.pid}/status").read()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def test_closing_documents_returns_their_memory(server):
    """Open ten documents, have them analysed, close them; four times: the server's memory
    after the last cycle is within 10 % of the first after a warm-up cycle (the warm-up makes
    the one-time allocations: the model's summaries, the allocator's arenas), and it stops
    growing (it grew 684, 800, 1,074 MB)."""
    text = (SMALL_TEXT + "\n") * 200  # 88 KB, 19,000 tokens each
    after = []
    for cycle in range(4):
        uris = [f"file:///tmp/cycle-{cycle}-{n}.md" for n in range(10)]
        for uri in uris:
            server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "markdown", "version": 1, "text": text}})
            assert server.request("foretell/surprisal", {"textDocument": {"uri": uri}})["result"]["tokens"]
        for uri in uris:
            server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        still_correct(server)  # the closes are handled
        # A request answered on the background lane after the memory each close released.
        assert server.request("foretell/surprisal", {"textDocument": {"uri": URI}})["result"]["tokens"]
        after.append(server_rss_mb(server))
    assert after[3] <= after[1] * 1.1 and after[3] - after[2] < 0.05 * after[1], after


def test_analyses_past_the_memory_budget_are_dropped_least_recently_used_first():
    """With analysisMemoryMB at its least (16), twelve documents of 37,000 tokens each leave
    the server near its starting size, and a document whose analysis was dropped is analysed
    again when asked for."""
    cls = get_backend("ngram").cls
    ModelStore().save("default", cls.fit(corpus_from_text(SMALL_TEXT), cls.Options(order=3)))
    s = RawServer()
    try:
        s.initialize({"foretell": {"analysisMemoryMB": 16, "surprisal": {"debounceMs": 0}}})
        text = (SMALL_TEXT + "\n") * 400
        tokens_of = lambda uri: s.request("foretell/surprisal", {"textDocument": {"uri": uri}})["result"]["tokens"]
        s.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "markdown", "version": 1, "text": text}})
        expected = tokens_of(URI)
        still_correct_on = lambda uri: tokens_of(uri) == expected
        before = server_rss_mb(s)
        for n in range(12):
            uri = f"file:///tmp/budget-{n}.md"
            s.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "markdown", "version": 1, "text": text}})
            assert still_correct_on(uri)
        grown = server_rss_mb(s) - before
        assert grown < 45, grown  # unbounded: about 110 MB
        assert still_correct_on(URI)  # dropped long ago, analysed again
    finally:
        s.close()


def test_a_large_document_is_analysed_around_what_the_editor_shows(server):
    """Past a million characters only a window around the visible range is analysed: colours
    arrive for wherever the editor scrolls, memory follows the window."""
    big = "file:///tmp/large.md"
    paragraph = SMALL_TEXT + "\n"
    text = paragraph * 3500  # 1.5 million characters
    server.notify("textDocument/didOpen", {"textDocument": {"uri": big, "languageId": "markdown", "version": 1, "text": text}})
    lines = text.count("\n")
    for first in (0, lines // 2, lines - 40):
        data = server.request("textDocument/semanticTokens/range", {"textDocument": {"uri": big},
                              "range": {"start": {"line": first, "character": 0}, "end": {"line": first + 40, "character": 0}}})["result"]["data"]
        assert data and data[0] >= first - 1  # tokens start at (or just before) the visible lines
    tokens = server.request("foretell/surprisal", {"textDocument": {"uri": big}})["result"]["tokens"]
    assert 0 < len(tokens) < 3500 * 80 / 5  # the window, not the document
    assert tokens[-1]["range"]["end"]["line"] >= lines - 40  # the window the editor last showed
    still_correct(server)
