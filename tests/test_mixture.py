"""The cache model and mixtures: EM finds the best weights, a fitted mixture is at least as good
as its best part on the text it was fitted to, and a mixture behaves like any model."""

import json

import numpy as np

from engine.model import options_from_strings
from engine.plugins import get_backend
from engine.scoring import encode
from engine.store import ModelStore
from engine.tokenizer import tokenize
from plugins.mix.model import fit_weights
from tests.conftest import SMALL_TEXT, run_cli

HELD_OUT = "The fox sat on the warm log. Cats and dogs met the fox. The fox runs; the fox sleeps."


def test_em_finds_the_weights_that_maximise_held_out_likelihood():
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0.001, 1, size=(2, 500)) ** np.array([[1.0], [3.0]])
    weights, history = fit_weights(probabilities, iterations=1000, tolerance=1e-12)
    assert all(b >= a - 1e-12 for a, b in zip(history, history[1:]))  # EM never goes down
    grid = np.linspace(0, 1, 10001)
    likelihood = [np.mean(np.log(w * probabilities[0] + (1 - w) * probabilities[1])) for w in grid]
    assert abs(weights[0] - grid[int(np.argmax(likelihood))]) < 1e-3
    assert weights.sum() == 1 or abs(weights.sum() - 1) < 1e-12


def test_the_cache_predicts_what_was_just_written(small_corpus):
    cls = get_backend("cache").cls
    model = cls.fit(small_corpus, options_from_strings(cls.Options, {"size": "50"}))
    fox = model.vocab.id("fox")
    fresh = model.next_logprobs(model.initial_state())[fox]
    state = model.advance_many(model.initial_state(), encode(model, tokenize("The fox ran."))[1:])
    assert model.next_logprobs(state)[fox] > fresh + 1.0  # e times likelier once the fox was mentioned
    forgotten = model.advance_many(state, [model.vocab.id("cat")] * 60)  # past the 50 tokens remembered
    assert np.isclose(model.next_logprobs(forgotten)[fox], np.log(0.2 * model.unigram[fox]))


def test_mix_command_fits_weights_and_the_mixture_works_everywhere(tmp_path):
    (tmp_path / "train.txt").write_text(SMALL_TEXT)
    (tmp_path / "held.txt").write_text(HELD_OUT)
    run_cli("train", "--name", "ng", "--order", "3", str(tmp_path / "train.txt"))
    run_cli("train", "--name", "ca", "--backend", "cache", str(tmp_path / "train.txt"))
    report = json.loads(run_cli("mix", "--name", "both", "ng", "ca", "--fit", str(tmp_path / "held.txt"), "--json").stdout)
    weights = [p["weight"] for p in report["parts"]]
    assert abs(sum(weights) - 1) < 1e-9 and all(0 < w < 1 for w in weights)
    assert report["perplexity"] <= min(p["perplexity"] for p in report["parts"]) * (1 + 1e-6)

    ppl = json.loads(run_cli("perplexity", "-m", "both", "--json", str(tmp_path / "held.txt")).stdout)
    assert ppl["backend"] == "mix" and abs(ppl["perplexity"] - report["perplexity"]) / report["perplexity"] < 1e-6
    predictions = json.loads(run_cli("predict", "-m", "both", "--json", "The fox ").stdout)["predictions"]
    assert abs(sum(p["prob"] for p in predictions)) <= 1 and len(predictions) == 10
    info = json.loads(run_cli("models", "info", "both", "--json").stdout)
    assert [p["name"] for p in info["details"]["parts"]] == ["ng", "ca"]

    run_cli("models", "rm", "ca")
    out = run_cli("predict", "-m", "both", "The ", check=False)
    assert out.returncode == 1 and "'ca' is no longer in the store" in out.stderr


def test_mix_refuses_nonsense(tmp_path):
    (tmp_path / "train.txt").write_text(SMALL_TEXT)
    run_cli("train", "--name", "ng", "--order", "2", str(tmp_path / "train.txt"))
    for args, message in (
        (["--name", "m", "ng", "ng"], "at least two different models"),
        (["--name", "ng", "ng", "default"], "name of one of its parts"),
        (["--name", "m", "ng", "nothere"], "no model named 'nothere'"),
    ):
        out = run_cli("mix", *args, "--fit", str(tmp_path / "train.txt"), check=False)
        assert out.returncode == 1 and message in out.stderr, out.stderr
    run_cli("train", "--name", "ng2", "--order", "3", str(tmp_path / "train.txt"))
    run_cli("mix", "--name", "m", "ng", "ng2", "--fit", str(tmp_path / "train.txt"))
    out = run_cli("mix", "--name", "mm", "m", "ng", "--fit", str(tmp_path / "train.txt"), check=False)
    assert out.returncode == 1 and "is a mixture itself" in out.stderr


def test_parts_with_different_vocabularies_give_a_proper_distribution(tmp_path):
    ngram, cache = get_backend("ngram").cls, get_backend("cache").cls
    store = ModelStore()
    store.save("a", ngram.fit(_corpus("The cat sat. The dog ran."), ngram.Options(order=2)))
    store.save("b", cache.fit(_corpus("A zebra grazed. The zebra ran."), cache.Options()))
    model = get_backend("mix").cls.combine(store.load_parts(["a", "b"]), ["a", "b"], [0.6, 0.4])
    assert "zebra" in model.vocab and "cat" in model.vocab
    state = model.advance(model.initial_state(), model.vocab.id("The"))
    assert np.isclose(np.exp(model.next_logprobs(state)).sum(), 1.0)


def _corpus(text):
    from engine.corpus import corpus_from_text

    return corpus_from_text(text)
