"""Online adaptation: learning adds exactly a document's counts, forgetting removes exactly
them, and the base model's files are never rewritten."""

import hashlib
import json

import numpy as np
import pytest

from engine.errors import ForetellError
from engine.scoring import encode
from engine.store import ModelStore
from engine.tokenizer import tokenize
from tests.conftest import SMALL_TEXT, run_cli

NOTES = "Kubernetes runs the pods. The pods run the containers. The cat ran to Kubernetes.\n"
ZEBRAS = "Zebras graze near the river. The zebra ran to the mat.\n"
HELD_OUT = "The pods run. Kubernetes runs the zebra. The cat sat on the mat. Unseen words here."


def folder_digest(folder):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def scores_by_word(model, text=HELD_OUT):
    """Log-probabilities of a text's tokens, encoded by each model's own vocabulary."""
    return model.score_ids(encode(model, tokenize(text)))


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k", "stupid-backoff"])
def test_learn_then_forget_equals_training_without_that_document(tmp_path, smoothing):
    for name, text in (("base.txt", SMALL_TEXT), ("notes.txt", NOTES), ("zebras.txt", ZEBRAS), ("both.txt", SMALL_TEXT + "\n" + NOTES)):
        (tmp_path / name).write_text(text)
    run_cli("train", "--name", "m", "--order", "3", "--smoothing", smoothing, str(tmp_path / "base.txt"))
    run_cli("train", "--name", "reference", "--order", "3", "--smoothing", smoothing, str(tmp_path / "both.txt"))
    store = ModelStore()
    base_files = folder_digest(store.path("m"))

    run_cli("learn", "-m", "m", str(tmp_path / "zebras.txt"), str(tmp_path / "notes.txt"))
    learned = store.load("m")
    assert "zebra" in learned.vocab and "Kubernetes" in learned.vocab
    run_cli("forget", "-m", "m", str(tmp_path / "zebras.txt"))

    adapted, reference = store.load("m"), store.load("reference")
    assert adapted.vocab.tokens == reference.vocab.tokens  # the zebra's words are gone again
    assert np.array_equal(scores_by_word(adapted), scores_by_word(reference), equal_nan=True)
    assert folder_digest(store.path("m")) == base_files  # the base model was never rewritten

    run_cli("forget", "-m", "m", "--all")
    assert np.array_equal(scores_by_word(store.load("m")), scores_by_word(store.load("m", adapted=False)), equal_nan=True)


def test_a_mixture_learns_through_its_parts_that_can_and_forgets_exactly(tmp_path):
    """The n-gram part learns the document, the cache stays as it was, the weights are kept;
    every load adapts afresh (a mixture is saved as its parts' names, so no copy is kept)."""
    (tmp_path / "base.txt").write_text(SMALL_TEXT)
    (tmp_path / "notes.txt").write_text(NOTES)
    run_cli("train", "--name", "n", "--order", "3", str(tmp_path / "base.txt"))
    run_cli("train", "--backend", "cache", "--name", "c", str(tmp_path / "base.txt"))
    run_cli("mix", "--name", "nc", "n", "c", "--fit", str(tmp_path / "base.txt"))
    store = ModelStore()
    base = store.load("nc")
    run_cli("learn", "-m", "nc", str(tmp_path / "notes.txt"))
    for _ in range(2):  # the second load finds no kept copy to trust
        mixed = store.load("nc")
        assert "Kubernetes" in mixed.vocab and list(mixed.weights) == list(base.weights)
        assert np.nansum(scores_by_word(mixed, NOTES)) > np.nansum(scores_by_word(base, NOTES))
    assert "Kubernetes" not in store.load("n").vocab  # the part's own model is untouched
    assert not list(store.layer("nc").folder.glob("adapted-*"))
    run_cli("forget", "-m", "nc", "--all")
    assert np.array_equal(scores_by_word(store.load("nc")), scores_by_word(base), equal_nan=True)


def test_relearning_a_changed_document_replaces_it_and_an_unchanged_one_is_a_no_op(tmp_path):
    (tmp_path / "base.txt").write_text(SMALL_TEXT)
    doc = tmp_path / "doc.txt"
    doc.write_text(ZEBRAS)
    run_cli("train", "--name", "m", "--order", "3", str(tmp_path / "base.txt"))
    run_cli("learn", "-m", "m", str(doc))
    assert "already learned" in run_cli("learn", "-m", "m", str(doc)).stdout
    doc.write_text(NOTES)
    assert "relearned" in run_cli("learn", "-m", "m", str(doc)).stdout
    history = json.loads(run_cli("models", "history", "m", "--json").stdout)
    assert [d["key"] for d in history["documents"]] == [str(doc.resolve())]
    model = ModelStore().load("m")
    assert "Kubernetes" in model.vocab and "zebra" not in model.vocab  # counted once, latest version


def test_history_lists_and_exports_what_was_learned(tmp_path):
    (tmp_path / "base.txt").write_text(SMALL_TEXT)
    (tmp_path / "notes.txt").write_text(NOTES)
    run_cli("train", "--name", "m", "--order", "3", str(tmp_path / "base.txt"))
    assert "learned nothing" in run_cli("models", "history", "m").stdout
    run_cli("learn", "-m", "m", str(tmp_path / "notes.txt"))
    listing = run_cli("models", "history", "m").stdout
    assert "notes.txt" in listing and "20 tokens" in listing
    run_cli("models", "history", "m", "--export", str(tmp_path / "layer.json"))
    exported = json.loads((tmp_path / "layer.json").read_text())
    assert exported["documents"][0]["sentences_text"][0] == "Kubernetes runs the pods ."
    assert "Kubernetes" in exported["documents"][0]["new_word_examples"] and exported["documents"][0]["new_words"] == 5


def test_models_that_cannot_learn_say_so_and_bad_files_lose_nothing(tmp_path, small_corpus):
    from engine.plugins import get_backend

    (tmp_path / "base.txt").write_text(SMALL_TEXT)
    run_cli("train", "--name", "m", "--order", "2", str(tmp_path / "base.txt"))
    run_cli("models", "export", "m", str(tmp_path / "m.arpa"))
    run_cli("models", "import", str(tmp_path / "m.arpa"), "--name", "imported")
    (tmp_path / "binary.bin").write_bytes(b"\x00\x01\x02" * 100)
    out = run_cli("learn", "-m", "imported", str(tmp_path / "base.txt"), check=False)
    assert out.returncode == 1 and "imported from ARPA" in out.stderr
    out = run_cli("learn", "-m", "m", str(tmp_path / "binary.bin"), check=False)
    assert out.returncode == 1 and "nothing was learned" in out.stderr
    assert run_cli("forget", "-m", "m", str(tmp_path / "never.txt"), check=False).returncode == 1
    assert ModelStore().layer("m").documents() == []

    cache = get_backend("cache").cls
    with pytest.raises(ForetellError, match="cannot learn online"):
        ModelStore().layer("c").learn("doc", NOTES, cache.fit(small_corpus, cache.Options()))
    window = get_backend("window").cls
    quantized = window.fit(small_corpus, window.Options(epochs=1, hidden=8, embedding=8)).quantized()
    with pytest.raises(ForetellError, match="quantized copy"):
        ModelStore().layer("w").learn("doc", NOTES, quantized)


def test_a_corrupt_layer_is_reported_not_guessed_at(tmp_path):
    (tmp_path / "base.txt").write_text(SMALL_TEXT)
    (tmp_path / "notes.txt").write_text(NOTES)
    run_cli("train", "--name", "m", "--order", "3", str(tmp_path / "base.txt"))
    run_cli("learn", "-m", "m", str(tmp_path / "notes.txt"))
    layer = ModelStore().layer("m")
    (layer.folder / "doc-1.npy").write_bytes(b"not numpy")
    out = run_cli("predict", "-m", "m", "The ", check=False)
    assert out.returncode == 1 and "corrupt" in out.stderr and "Traceback" not in out.stderr
    run_cli("forget", "-m", "m", "--all")
    assert run_cli("predict", "-m", "m", "The ").returncode == 0


def test_the_adapted_model_is_kept_for_the_next_load_and_dropped_by_forgetting(tmp_path):
    for name, text in (("base.txt", SMALL_TEXT), ("notes.txt", NOTES), ("zebras.txt", ZEBRAS)):
        (tmp_path / name).write_text(text)
    run_cli("train", "--name", "m", "--order", "3", str(tmp_path / "base.txt"))
    run_cli("learn", "-m", "m", str(tmp_path / "zebras.txt"), str(tmp_path / "notes.txt"))
    store = ModelStore()
    layer = store.layer("m")
    built = store.load("m")
    kept = sorted(layer.folder.glob("adapted-*"))
    assert len(kept) == 1
    again = store.load("m")  # mapped from what was kept: the same model
    assert np.array_equal(scores_by_word(again), scores_by_word(built), equal_nan=True)
    assert again.vocab.tokens == built.vocab.tokens and again.learned_documents == 2

    run_cli("forget", "-m", "m", str(tmp_path / "zebras.txt"))
    assert not list(layer.folder.glob("adapted-*"))  # nothing of the forgotten document stays on disk
    run_cli("train", "--name", "only-notes", "--order", "3", str(tmp_path / "base.txt"))
    run_cli("learn", "-m", "only-notes", str(tmp_path / "notes.txt"))
    assert np.array_equal(scores_by_word(store.load("m")), scores_by_word(store.load("only-notes")), equal_nan=True)

    (tmp_path / "base.txt").write_text(SMALL_TEXT + "\n" + ZEBRAS)
    run_cli("train", "--name", "m", "--order", "3", str(tmp_path / "base.txt"))  # a new base: what was kept is stale
    run_cli("train", "--name", "fresh", "--order", "3", str(tmp_path / "base.txt"))
    run_cli("learn", "-m", "fresh", str(tmp_path / "notes.txt"))
    assert np.array_equal(scores_by_word(store.load("m")), scores_by_word(store.load("fresh")), equal_nan=True)


# Tiny networks on tiny text: more passes than the default, so one learned note shows.
TINY_NEURAL = {"rnn": ["-O", "hidden=16", "-O", "embedding=16", "-O", "layers=1"],
               "window": ["-O", "hidden=16", "-O", "embedding=8", "-O", "adapt_passes=10"]}


@pytest.mark.parametrize("backend, options", [("rnn", []), ("window", []), ("rnn", ["-O", "tied=false"])], ids=["rnn", "window", "rnn-untied"])
def test_a_neural_model_learns_new_words_and_forgetting_restores_its_base(tmp_path, backend, options):
    for name, text in (("base.txt", SMALL_TEXT), ("notes.txt", NOTES * 2), ("zebras.txt", ZEBRAS * 2)):
        (tmp_path / name).write_text(text)
    for name in ("m", "only-notes"):
        run_cli("train", "--backend", backend, "--name", name, "--epochs", "2", *TINY_NEURAL[backend], *options, str(tmp_path / "base.txt"))
    store = ModelStore()
    base_files = folder_digest(store.path("m"))
    base = store.load("m")

    run_cli("learn", "-m", "m", str(tmp_path / "zebras.txt"), str(tmp_path / "notes.txt"))
    learned = store.load("m")
    assert "Kubernetes" in learned.vocab and "Zebras" in learned.vocab and "Kubernetes" not in base.vocab
    notes = encode(learned, tokenize(NOTES))
    known = notes < len(base.vocab)  # the learned text's known words are likelier than before
    before, after = base.score_ids(np.where(known, notes, 0)), learned.score_ids(notes)
    assert np.nansum(after[known]) > np.nansum(before[known])
    predicted = run_cli("predict", "-m", "m", "--json", "-k", "50", "Kub").stdout
    assert "Kubernetes" in predicted  # a learned word is completed

    run_cli("forget", "-m", "m", str(tmp_path / "zebras.txt"))  # fine-tuned again from the base, on the notes alone
    run_cli("learn", "-m", "only-notes", str(tmp_path / "notes.txt"))
    without, reference = store.load("m"), store.load("only-notes")
    assert without.vocab.tokens == reference.vocab.tokens and "Zebras" not in without.vocab
    assert np.array_equal(scores_by_word(without), scores_by_word(reference), equal_nan=True)

    run_cli("forget", "-m", "m", "--all")
    assert np.array_equal(scores_by_word(store.load("m")), scores_by_word(base), equal_nan=True)
    assert folder_digest(store.path("m")) == base_files  # the base weights were never rewritten


def test_fine_tuning_reads_the_last_learned_documents_within_its_budget():
    from plugins.neural.adapt import recent

    a, b, c = np.arange(5), np.arange(3), np.arange(4)
    assert [len(s) for s in recent([a, b, c], 7)] == [3, 4]  # whole documents, the latest last
    assert [len(s) for s in recent([a, b, c], 6)] == [4]
    assert [len(s) for s in recent([a, b, c], 1)] == [4]  # the last one, whatever its size
    assert [len(s) for s in recent([a, b, c], 100)] == [5, 3, 4]
