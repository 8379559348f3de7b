"""Nothing lost, nothing executed, nothing leaves the machine: interrupted and concurrent
trainings, readers during a swap, unreadable inputs, and property tests of scoring and of the
server's document model."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine.corpus import build_corpus, corpus_from_text
from engine.plugins import get_backend
from engine.scoring import encode, perplexity, score_tokens
from engine.store import ModelStore
from engine.tokenizer import tokenize
from tests.conftest import SMALL_TEXT

PROBE = "The cat sat on the mat. The dog ran over the log."


def cli(*args):
    return [sys.executable, "-c", "from engine.cli import main; main()", *args]


def probe_scores(name):
    model = ModelStore().load(name)
    return model.score_ids(encode(model, tokenize(PROBE)))


def big_corpus(path, words=1_500_000):
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(5000)])
    with open(path, "w") as f:
        for _ in range(words // 15):
            f.write(" ".join(vocab[rng.integers(0, 5000, 15)]) + " .\n")
    return path


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killing_a_retraining_leaves_the_old_model_as_it_was(tmp_path, sig):
    small = tmp_path / "small.txt"
    small.write_text(SMALL_TEXT)
    subprocess.run(cli("train", "--name", "notes", str(small)), check=True, capture_output=True)
    before = probe_scores("notes")
    corpus = big_corpus(tmp_path / "big.txt")
    for delay in (0.5, 1.5, 2.5):
        # Ctrl-C reaches the child as a user's would even when this run ignores SIGINT (a shell
        # runs background jobs that way, and Python then never raises KeyboardInterrupt).
        proc = subprocess.Popen(cli("train", "--name", "notes", "--order", "5", str(corpus)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if sig == signal.SIGINT and proc.returncode != 0:
            assert b"Traceback" not in err
        scores = probe_scores("notes")
        if proc.returncode != 0:  # interrupted: the old model, exactly
            assert np.array_equal(scores, before, equal_nan=True)
    # No half-written folder is left to confuse anyone (a killed one is swept on the next listing).
    store = ModelStore()
    store.names()
    assert not [p for p in store.models.iterdir() if p.name.startswith(".tmp-") and p.is_dir()]
    assert not list((store.root / "work").glob(".scratch-*"))  # (nor a killed training's intermediate files)


def test_two_trainings_of_one_name_at_once_end_with_one_complete_model(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(SMALL_TEXT * 20)
    b.write_text("Penguins swim in cold water. The penguin eats fish. " * 200)
    references = {}
    for name, path in (("ref-a", a), ("ref-b", b)):
        subprocess.run(cli("train", "--name", name, str(path)), check=True, capture_output=True)
        references[name] = probe_scores(name)
    for _ in range(3):
        procs = [subprocess.Popen(cli("train", "--name", "shared", str(p)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in (a, b)]
        assert all(p.wait(timeout=120) == 0 for p in procs)
        result = probe_scores("shared")
        assert any(np.array_equal(result, ref, equal_nan=True) for ref in references.values())


def test_a_reader_during_replacements_always_gets_a_whole_model(tmp_path):
    cls = get_backend("ngram").cls
    models = [cls.fit(corpus_from_text(text), cls.Options(order=3)) for text in (SMALL_TEXT, "Penguins swim. The penguin dives deep. " * 20)]
    expected = [m.score_ids(encode(m, tokenize(PROBE))) for m in models]
    store = ModelStore()
    store.save("live", models[0])
    stop, problems, loads = threading.Event(), [], [0]

    def reader():
        while not stop.is_set():
            try:
                got = probe_scores("live")
                if not any(np.array_equal(got, e, equal_nan=True) for e in expected):
                    problems.append("a mixed model")
                loads[0] += 1
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                problems.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(40):
        store.save("live", models[i % 2])
    stop.set()
    thread.join()
    assert not problems and loads[0] > 0


def test_unreadable_files_are_skipped_with_a_reason(tmp_path, monkeypatch):
    (tmp_path / "good.txt").write_text("Readable words here.\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("You may not read this.\n")
    os.mkfifo(tmp_path / "pipe.txt")
    real_open = open

    def guarded(path, *args, **kwargs):
        if str(path) == str(secret):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded)
    corpus = build_corpus([str(tmp_path)])
    reasons = {os.path.basename(s["path"]): s["reason"] for s in corpus.summary["skipped"]}
    assert reasons["secret.txt"] == "permission denied"
    assert "not a regular file" in reasons["pipe.txt"]
    assert "Readable" in corpus.vocab


def test_a_ten_megabyte_line_and_nul_bytes(tmp_path):
    (tmp_path / "long.txt").write_text("word " * 2_000_000)
    (tmp_path / "nul.txt").write_bytes(b"abc\x00def" * 1000)
    corpus = build_corpus([str(tmp_path)])
    assert corpus.summary["words"] == 2_000_000
    assert any(s["reason"].startswith("binary") for s in corpus.summary["skipped"])


def test_tcp_mode_listens_on_loopback_by_default(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(cli("serve", "--tcp", str(port)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        line = proc.stderr.readline().decode()
        assert f"127.0.0.1:{port}" in line
        def listening():
            rows = open(f"/proc/{proc.pid}/net/tcp").read().splitlines()[1:]
            return [row.split()[1] for row in rows if row.split()[3] == "0A"]  # LISTEN sockets

        deadline = time.monotonic() + 20
        while f"0100007F:{port:04X}" not in listening():
            assert time.monotonic() < deadline, "the server did not listen on 127.0.0.1"
            time.sleep(0.1)
        assert f"00000000:{port:04X}" not in listening()  # not on every interface
    finally:
        proc.kill()


def test_nothing_connects_anywhere(monkeypatch, tmp_path):
    """Training, predicting, scoring and the default model work with the network cut off."""
    from click.testing import CliRunner

    from engine.cli import cli as foretell

    def refuse(*args, **kwargs):
        raise AssertionError(f"network use: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    f = tmp_path / "t.txt"
    f.write_text(SMALL_TEXT)
    runner = CliRunner()
    for args in (["train", "--name", "t", str(f)], ["predict", "-m", "t", "The "], ["predict", "The "], ["score", "-m", "t", str(f)]):
        result = runner.invoke(foretell, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output


WORDS = st.sampled_from("the cat sat on mat dog ran a log . , fox zebra The A".split())


@pytest.fixture(scope="module")
def ngram_models(small_corpus):
    cls = get_backend("ngram").cls
    return [cls.fit(small_corpus, cls.Options(order=o, smoothing=s)) for o in (2, 4) for s in ("kneser-ney", "add-k", "stupid-backoff")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(WORDS, min_size=0, max_size=12), min_size=1, max_size=5))
def test_scoring_identities_on_random_text(ngram_models, sentences):
    text = "\n".join(" ".join(s) for s in sentences) + "\n"
    for model in ngram_models:
        tokens = tokenize(text, pretokenized=True)
        scores = score_tokens(model, tokens)
        report = perplexity(model, tokens)
        bits = np.array([s.surprisal_bits for s in scores])
        assert len(bits) == report.tokens == sum(len(s) + 1 for s in tokens)
        assert bits.sum() == pytest.approx(-report.log10_prob * np.log2(10), rel=1e-9, abs=1e-9)
        assert report.perplexity == pytest.approx(2 ** bits.mean(), rel=1e-9)
        assert all(s.rank >= 1 for s in scores)


EDIT_TEXT = st.text(alphabet=st.sampled_from(list("abc XYZ.,\n\n-'é𝄞")), max_size=12)


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("The cat sat.\n é𝄞")), max_size=80), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 20), EDIT_TEXT), max_size=12))
def test_server_document_model_follows_random_edits(small_corpus, initial, edits):
    """After every incremental edit (UTF-16 positions), the server's text equals the client's,
    and the reused analysis equals one made from scratch."""
    from lsprotocol import types
    from pygls.workspace import TextDocument

    from engine.analysis import DocumentAnalysis

    cls = get_backend("ngram").cls
    model = ngram_model_cache.setdefault("m", cls.fit(small_corpus, cls.Options(order=3)))
    doc = TextDocument("file:///fuzz.md", initial, version=0)
    client_text = initial
    analysis = DocumentAnalysis(model, doc.source)
    for version, (start, length, new) in enumerate(edits, start=1):
        start = min(start, len(client_text))
        end = min(start + length, len(client_text))
        rng = types.Range(start=_utf16_position(client_text, start), end=_utf16_position(client_text, end))
        doc.apply_change(types.TextDocumentContentChangePartial(range=rng, text=new))
        client_text = client_text[:start] + new + client_text[end:]
        assert doc.source == client_text
        analysis = DocumentAnalysis(model, doc.source, analysis)
        fresh = DocumentAnalysis(model, doc.source)
        assert analysis.texts == fresh.texts
        assert np.array_equal(analysis.starts, fresh.starts)
        assert np.array_equal(analysis.logprob, fresh.logprob, equal_nan=True)
        assert np.array_equal(analysis.rank, fresh.rank)


ngram_model_cache: dict = {}


def _utf16_position(text, offset):
    from lsprotocol import types

    before = text[:offset]
    line = before.count("\n")
    column = before[before.rfind("\n") + 1 :]
    return types.Position(line=line, character=len(column.encode("utf-16-le")) // 2)


def test_model_info_json_is_valid(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(SMALL_TEXT)
    subprocess.run(cli("train", "--name", "t", str(f)), check=True, capture_output=True)
    info = json.loads(subprocess.run(cli("models", "info", "t", "--json"), check=True, capture_output=True, text=True).stdout)
    assert info["backend"] == "ngram" and info["corpus"]["documents"] == 1


def test_training_memory_follows_the_budget_not_the_model(tmp_path):
    """With ``--memory 16M`` a model of over 1.5 million n-grams is counted, estimated and saved
    through files a block at a time: the memory this process allocates stays near the budget,
    where the default budget (1G) holds every table in memory, several times as much. Same
    model files either way."""
    import tracemalloc

    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(3000)])
    path = tmp_path / "random.txt"
    path.write_text("\n".join(" ".join(words[rng.integers(0, 3000, 12)]) for _ in range(50_000)) + "\n")
    corpus = build_corpus([str(path)], pretokenized=True)
    cls = get_backend("ngram").cls
    peaks, folders = {}, {}
    for memory in ("16M", "1G"):
        (tmp_path / memory).mkdir()
        tracemalloc.start()
        model = cls.fit(corpus, cls.Options(order=4, memory=memory), workdir=tmp_path / "work" / memory)
        model.save(tmp_path / memory)
        peaks[memory] = tracemalloc.get_traced_memory()[1] >> 20
        tracemalloc.stop()
        folders[memory] = tmp_path / memory
        assert sum(len(k) for k in model.keys) > 1_500_000
        del model
    assert peaks["16M"] <= 24 and peaks["1G"] > 3 * peaks["16M"], f"peak MB by budget: {peaks}"
    assert list((tmp_path / "work").iterdir()) == []  # (its files are gone)
    for f in folders["1G"].glob("*.npy"):
        assert f.read_bytes() == (folders["16M"] / f.name).read_bytes(), f.name


def test_training_memory_follows_the_model_not_the_corpus(tmp_path, monkeypatch):
    """A corpus four times larger (same vocabulary and n-grams) must not need four times the
    memory: ids spill to a memory-mapped file and n-grams are counted a chunk at a time."""
    import tracemalloc

    from engine import corpus as corpus_module
    from plugins.ngram import counts as counts_module

    monkeypatch.setattr(corpus_module.IdStream, "SPILL", 20_000)
    monkeypatch.setattr(counts_module, "CHUNK", 20_000)
    monkeypatch.setattr(corpus_module, "READ_CHUNK", 16_384)
    paragraph = (SMALL_TEXT.replace("\n", " ") + "\n")
    cls = get_backend("ngram").cls
    peaks, models = [], []
    for repeats in (1000, 4000):
        path = tmp_path / f"c{repeats}.txt"
        path.write_text(paragraph * repeats)
        tracemalloc.start()
        corpus = build_corpus([str(path)], pretokenized=True, max_vocab=40)
        model = cls.fit(corpus, cls.Options(order=4))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert isinstance(corpus.ids, np.memmap)
        models.append((model, corpus))
    assert peaks[1] < 1.5 * peaks[0], f"peak memory grew with the corpus: {peaks}"
    # And chunked counting gives exactly the model counted at once.
    model, corpus = models[1]
    whole = counts_module._count_chunk(np.asarray(corpus.ids, dtype=np.int64), 4, len(corpus.vocab))
    for ours, reference in zip(model.counts, [o.counts for o in whole.orders]):
        assert np.array_equal(ours, reference)
