"""Pruning an n-gram model: what goes costs what Stolcke's formula says, what stays is a proper
model (every distribution sums to 1, every kept n-gram's context and lower estimate exist),
and the copy is saved beside the original, which is never changed."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.corpus import corpus_from_text
from engine.plugins import backends
from engine.scoring import encode
from engine.tokenizer import tokenize
from plugins.ngram import prune
from plugins.ngram.counts import index_of, ngram_rows


def _text(sentences: int, seed: int) -> str:
    """Sentences from a small random bigram chain: many n-grams, most of them rare."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(40)]
    follow = rng.dirichlet(np.full(40, 0.3), size=40)
    lines = []
    for _ in range(sentences):
        w = rng.integers(40)
        sentence = []
        for _ in range(rng.integers(4, 12)):
            sentence.append(words[w])
            w = rng.choice(40, p=follow[w])
        lines.append(" ".join(sentence) + " .")
    return "\n".join(lines) + "\n"


TRAIN, HELD_OUT = _text(600, 1), _text(50, 2)


@pytest.fixture(scope="module")
def model():
    cls = backends()["ngram"].cls
    return cls.fit(corpus_from_text(TRAIN), cls.Options(order=3))


def _size(model) -> int:
    return sum(len(k) for k in model.keys)


def _contexts(model, text=HELD_OUT, limit=60):
    state = model.initial_state()
    for token_id in encode(model, tokenize(text))[1:limit]:
        yield state
        state = model.advance(state, int(token_id))


def test_the_cost_of_dropping_an_ngram_is_the_divergence_it_causes(model):
    """For a top-order n-gram hw only context h changes when it goes, so Stolcke's D(hw) is
    P(h) times KL(p(.|h) || p'(.|h)), computed here from the two models' full distributions."""
    s = prune.Structure.of(model.keys, model.V)
    costs = prune.relative_entropy(model.logp, model.backoff, s)
    top = len(model.keys) - 1
    rows = ngram_rows(model.keys, model.V, top + 1)
    rng = np.random.default_rng(0)
    for i in list(np.argsort(costs[top])[-3:]) + list(rng.choice(len(rows), 5, replace=False)):
        cheap = [None] + [np.zeros(len(k), dtype=bool) for k in model.keys[1:]]
        cheap[top][i] = True
        keep = prune.kept(cheap, s, model.V)
        keys, logp, backoff = prune.apply(model.keys, model.logp, model.backoff, model.V, keep, s)
        without = type(model)(model.vocab, model.options, keys, logp, backoff, None, {})
        h = tuple(int(w) for w in rows[i, :-1])
        p, q = model.next_logprobs(h), without.next_logprobs(h)
        finite = np.isfinite(p)
        kl = float(np.sum(np.exp(p[finite]) * (p[finite] - q[finite])))
        history = sum(float(model.logp[j][index_of(rows[i : i + 1, : j + 1], model.keys, model.V)[0]]) for j in range(top))
        assert costs[top][i] == pytest.approx(10.0**history * kl, rel=2e-3, abs=1e-12)


@pytest.mark.parametrize("how", [{"ngrams": 0.5}, {"ngrams": 0.2}, {"min_counts": [1]}, {"min_counts": [0, 2]}])
def test_what_stays_is_a_proper_model(model, how):
    how = {"ngrams": int(_size(model) * how["ngrams"])} if "ngrams" in how else how
    smaller = model.pruned(**how)
    assert _size(smaller) < _size(model)
    if "ngrams" in how:
        assert how["ngrams"] <= _size(smaller) <= how["ngrams"] * 1.02 + 5
    for state in _contexts(smaller):
        assert np.exp(smaller.next_logprobs(state)).sum() == pytest.approx(1.0, abs=1e-5)
    for k in range(2, len(smaller.keys) + 1):
        rows = ngram_rows(smaller.keys, smaller.V, k)
        assert (index_of(rows[:, :-1], smaller.keys, smaller.V) >= 0).all()  # its context
        assert (index_of(rows[:, 1:], smaller.keys, smaller.V) >= 0).all()  # its lower-order estimate
        before = index_of(rows, model.keys, model.V)
        assert np.array_equal(smaller.logp[k - 1], model.logp[k - 1][before])  # kept as they were
        if "min_counts" in how and k == len(smaller.keys):
            assert (model.counts[k - 1][before] > how["min_counts"][-1]).all()


def test_pruning_nothing_changes_nothing(model):
    same = model.pruned(ngrams=_size(model))
    ids = encode(model, tokenize(HELD_OUT))
    assert np.array_equal(same.score_ids(ids), model.score_ids(ids), equal_nan=True)


def test_a_pruned_copy_round_trips_through_arpa(model, tmp_path):
    smaller = model.pruned(ngrams=_size(model) // 3)
    smaller.export_arpa(tmp_path / "small.arpa")
    back = type(model).from_arpa(tmp_path / "small.arpa")
    ids = encode(smaller, tokenize(HELD_OUT))
    assert np.allclose(back.score_ids(encode(back, tokenize(HELD_OUT))), smaller.score_ids(ids), atol=1e-5, equal_nan=True)


def run(*args, ok=True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_prune_saves_a_smaller_copy_and_keeps_the_original(tmp_path):
    (tmp_path / "train.txt").write_text(TRAIN)
    (tmp_path / "held.txt").write_text(HELD_OUT)
    run("train", "--name", "notes", "--pretokenized", str(tmp_path / "train.txt"))
    original = json.loads(run("models", "info", "notes", "--json"))
    out = run("models", "prune", "notes", "--to", "2k", "--check", str(tmp_path / "held.txt"), "--pretokenized")
    assert "perplexity on" in out and "Saved 'notes-pruned'" in out
    info = json.loads(run("models", "info", "notes-pruned", "--json"))
    assert 2000 <= sum(info["facts"]["ngrams"]) < sum(original["facts"]["ngrams"])
    assert info["details"]["pruned"]["method"] == "relative-entropy"
    assert json.loads(run("models", "info", "notes", "--json"))["facts"] == original["facts"]
    out = run("models", "prune", "notes", "--drop-counts", "0,1", "--name", "rare-gone")
    assert json.loads(run("models", "info", "rare-gone", "--json"))["details"]["pruned"]["min_counts"] == [1]
    run("models", "prune", "notes", "--to", "40KB", "--name", "by-bytes")
    assert sum(json.loads(run("models", "info", "by-bytes", "--json"))["facts"]["ngrams"]) * 16 >= 40 * 1024
    assert "pruned copy" in run("learn", "-m", "notes-pruned", str(tmp_path / "held.txt"), ok=False)
    assert "no counts" in run("models", "prune", "notes-pruned", "--drop-counts", "0,1", "--name", "again", ok=False)
    assert "not a size" in run("models", "prune", "notes", "--to", "lots", ok=False)
    assert "non-decreasing" in run("models", "prune", "notes", "--drop-counts", "0,2,1", ok=False)
    assert "one of --to" in run("models", "prune", "notes", ok=False)
    assert "own" in run("models", "prune", "notes", "--to", "1k", "--name", "notes", ok=False)
    run("train", "--name", "addk", "--pretokenized", "-O", "smoothing=add-k", str(tmp_path / "train.txt"))
    assert "add-k" in run("models", "prune", "addk", "--to", "1k", ok=False)
