"""The store never loses a good model and never runs code from a model file."""

import json
import os
import pickle
import stat

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine.errors import ForetellError, ModelFormatError
from engine.plugins import get_backend
from engine.store import ModelStore
from engine.tokenizer import tokenize
from engine.vocab import SPECIALS, TokenFile, Vocabulary
from engine.scoring import encode


@pytest.fixture
def model(small_corpus):
    cls = get_backend("ngram").cls
    return cls.fit(small_corpus, cls.Options(order=3))


def scores(model):
    return model.score_ids(encode(model, tokenize("The cat sat on the mat.")))


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "", "x" * 65, "a\\b", "name with space"])
def test_names_with_paths_are_refused(name, model):
    with pytest.raises(ForetellError, match="invalid model name"):
        ModelStore().save(name, model)


def test_a_failed_save_leaves_the_previous_model_intact(model, small_corpus, monkeypatch):
    store = ModelStore()
    store.save("notes", model)
    before = scores(store.load("notes"))
    cls = get_backend("ngram").cls
    other = cls.fit(small_corpus, cls.Options(order=2))

    def crash(folder):
        (folder / "keys1.npy").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(other, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save("notes", other)
    assert np.array_equal(scores(store.load("notes")), before, equal_nan=True)
    assert not [p for p in store.models.iterdir() if p.name.startswith(".tmp-")]


def test_scratch_folders_of_killed_trainings_are_swept_and_live_ones_kept(model, tmp_path):
    """A training's large intermediate files live in the store's work/ under its pid; when the
    training was killed (its pid gone) the next listing removes them, gigabytes at scale."""
    import subprocess
    import sys

    store = ModelStore()
    store.save("notes", model)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    work = store.root / "work"
    dead = work / f".scratch-{gone.pid}-abc"
    live = work / f".scratch-{os.getpid()}-def"
    checkpoints = work / "notes"  # (a model's checkpoint folder is never swept)
    for folder in (dead, live, checkpoints):
        (folder / "runs").mkdir(parents=True)
    assert store.names() == ["notes"]
    assert not dead.exists() and live.exists() and checkpoints.exists()


def test_a_crash_between_the_two_renames_is_recovered(model):
    store = ModelStore()
    store.save("notes", model)
    os.rename(store.path("notes"), store.models / ".old-notes-1-1")
    assert np.array_equal(scores(store.load("notes")), scores(model), equal_nan=True)


def test_store_is_private_to_the_user(model):
    store = ModelStore()
    folder = store.save("notes", model)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in folder.iterdir())


def corrupt(store, name, filename, content):
    path = store.path(name) / filename
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)


@pytest.mark.parametrize(
    "filename, content, message",
    [
        ("manifest.json", '{"format": "foretell-model", "format_version": 1', "corrupt"),
        ("manifest.json", '{"format": "foretell-model", "format_version": 99, "backend": "ngram"}', "newer foretell"),
        ("manifest.json", '{"model_type": "llama"}', "another tool"),
        ("logp1.npy", b"\x93NUMPY truncated", "corrupt"),
        ("vocab.json", "[1, 2", "corrupt"),
        ("vocab.json", '["<unk>", "<s>", "</s>", "the", "the"]', "duplicate tokens"),
        ("vocab.json", b'["<unk>", "<s>", "</s>", "caf\xc3"]', "corrupt"),  # (not UTF-8)
        ("vocab.json", '["<unk>", "<s>", "</s>", "a\\x"]', "corrupt"),  # (no such escape)
        ("vocab.json", '["<unk>", "<s>", "</s>", "a\tb"]', "corrupt"),  # (a raw control character)
        ("vocab.json", '["<unk>", "</s>", "<s>", "the"]', "not a list of tokens"),
    ],
)
def test_corrupt_foreign_or_newer_files_are_refused(model, filename, content, message):
    store = ModelStore()
    store.save("notes", model)
    corrupt(store, "notes", filename, content)
    with pytest.raises(ModelFormatError, match=message):
        store.load("notes")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=40))
def test_vocabulary_files_read_back_token_for_token(tmp_path_factory, words):
    """The vocabulary is read a token at a time from the file's bytes (TokenFile): quotes,
    backslashes, control characters and letters beyond ASCII come back as json reads them."""
    tokens = [*SPECIALS, *dict.fromkeys(w for w in words if w not in SPECIALS)]
    folder = tmp_path_factory.mktemp("vocab")
    Vocabulary(tokens).save(folder)
    read = TokenFile.of((folder / "vocab.json").read_bytes())
    assert read is not None and [read[i] for i in range(len(tokens))] == tokens
    lazy = Vocabulary(read, np.load(folder / "vocab.order.npy"))  # (as a model's later loads: the list not made)
    assert [lazy.token(i) for i in range(len(tokens))] == tokens
    assert [lazy.get(t) for t in tokens] == list(range(len(tokens)))
    assert "tokens" not in lazy.__dict__
    loaded = Vocabulary.load(folder)
    assert [loaded.token(i) for i in range(len(tokens))] == tokens
    assert [loaded.get(t) for t in tokens] == list(range(len(tokens)))
    assert loaded.tokens == tokens == json.loads((folder / "vocab.json").read_text(encoding="utf-8"))


def test_a_vocabulary_another_json_writer_spaced_differently_reads_the_same(model):
    store = ModelStore()
    store.save("notes", model)
    path = store.path("notes") / "vocab.json"
    path.write_text(json.dumps(json.loads(path.read_text()), separators=(",", ":")))
    assert np.array_equal(scores(store.load("notes")), scores(model), equal_nan=True)  # (<s> scores NaN)


def test_a_folder_from_another_tool_is_refused():
    store = ModelStore()
    (store.models / "hf").mkdir(parents=True)
    (store.models / "hf" / "config.json").write_text("{}")
    with pytest.raises(ForetellError, match="not a foretell model"):
        store.load("hf")


class Exploit:
    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_is_refused_and_never_executed(model, tmp_path):
    store = ModelStore()
    store.save("notes", model)
    marker = tmp_path / "pwned"
    Exploit.marker = str(marker)
    payload = np.array([Exploit()], dtype=object)
    with open(store.path("notes") / "logp1.npy", "wb") as f:
        np.save(f, payload, allow_pickle=True)
    (store.path("notes") / "vocab.pkl").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ModelFormatError):
        store.load("notes")
    assert not marker.exists()


def test_unknown_model_and_missing_backend_are_clear(model):
    store = ModelStore()
    with pytest.raises(ForetellError, match="no model named 'nope'"):
        store.load("nope")
    store.save("notes", model)
    manifest = json.loads((store.path("notes") / "manifest.json").read_text())
    manifest["backend"] = "transformer"
    (store.path("notes") / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ForetellError, match="needs the 'transformer' backend, which is not installed"):
        store.load("notes")


def test_default_model_is_built_once_from_python_help_topics():
    from engine.default_model import load_model

    store = ModelStore()
    first = load_model(store)
    assert store.exists("default") and len(first.vocab) > 1000
    mtime = (store.path("default") / "manifest.json").stat().st_mtime_ns
    load_model(store)
    assert (store.path("default") / "manifest.json").stat().st_mtime_ns == mtime
