"""Incremental document analysis (engine.analysis): after any edit it equals a fresh analysis,
for every kind of model, and models with state re-score only what the edit changed."""

import random

import numpy as np
import pytest

from engine.analysis import DocumentAnalysis
from engine.corpus import corpus_from_text
from engine.model import options_from_strings
from engine.plugins import get_backend
from plugins.mix.model import MixOptions, MixtureModel
from tests.conftest import SMALL_TEXT

pytest.importorskip("torch")

TINY = {"epochs": "1", "hidden": "16", "embedding": "16"}


def fit(backend, **options):
    cls = get_backend(backend).cls
    return cls.fit(corpus_from_text(SMALL_TEXT * 3), options_from_strings(cls.Options, options))


@pytest.fixture(scope="module")
def models():
    ngram, cache = fit("ngram", order="3"), fit("cache", size="40")
    return {
        "elman": fit("rnn", **TINY),
        "lstm": fit("rnn", cell="lstm", **TINY),
        "window": fit("window", window="3", **TINY),
        "cache": cache,
        "mix": MixtureModel([ngram, cache], MixOptions.of(["ngram", "cache"], [0.7, 0.3])),
        "ngram": ngram,
    }


def random_edit(rng, text):
    words = SMALL_TEXT.split()
    i = rng.randrange(len(text) + 1)
    choice = rng.random()
    if choice < 0.4:
        return text[:i] + " " + rng.choice(words) + text[i:]
    if choice < 0.7:
        return text[:i] + text[i + rng.randrange(1, 30) :]
    if choice < 0.85:
        return text[:i] + "\n\n" + text[i:]
    return text[:i] + ". " + rng.choice(words).capitalize() + " " + text[i:]


@pytest.mark.parametrize("name", ["elman", "lstm", "window", "cache", "mix", "ngram"])
def test_random_edits_give_what_a_fresh_analysis_gives(models, name):
    model = models[name]
    rng = random.Random(name)
    text = SMALL_TEXT * 4
    analysis = DocumentAnalysis(model, text)
    for _ in range(25):
        text = random_edit(rng, text)
        if rng.random() < 0.3:  # an analysis overtaken by the next edit, stopped half-way
            stopped = DocumentAnalysis(model, text, analysis, run=False)
            for _, _ in zip(stopped.steps(), range(rng.randrange(1, 4))):
                pass
            analysis = stopped
            text = random_edit(rng, text)
        analysis = DocumentAnalysis(model, text, analysis)
        fresh = DocumentAnalysis(model, text)
        assert analysis.complete and analysis.texts == fresh.texts
        assert np.array_equal(analysis.starts, fresh.starts)
        assert np.allclose(analysis.bits, fresh.bits, atol=1e-3, rtol=0)
        assert np.allclose(analysis.entropy, fresh.entropy, atol=1e-3, rtol=0)
        assert np.mean(analysis.rank == fresh.rank) > 0.99  # a near-tie may swap


@pytest.mark.parametrize("name", ["elman", "lstm", "cache"])
def test_an_edit_re_scores_only_until_the_state_agrees_again(models, name, monkeypatch):
    model = models[name]
    text = SMALL_TEXT * 20
    first = DocumentAnalysis(model, text)
    scored = []
    original = type(model).token_stats_from

    def counting(self, ids, state):
        scored.append(len(ids))
        return original(self, ids, state)

    monkeypatch.setattr(type(model), "token_stats_from", counting)
    middle = text.index("\n\n", len(text) // 2)
    edited = text[:middle] + " The dog sat on the warm log." + text[middle:]
    DocumentAnalysis(model, edited, first)
    assert 0 < sum(scored) < len(first.ids) / 10


def test_hover_state_is_the_documents_for_a_model_with_state(models):
    """The words 'expected' at a token are predicted from the whole document before it, as
    its bits and rank are, not from its sentence alone."""
    model = models["elman"]
    text = "The cat sat on the mat. The dog sat on the log.\n\nA fox met the dog."
    analysis = DocumentAnalysis(model, text)
    index = len(analysis.ids) - 2  # "dog" in the last sentence
    walked = model.initial_state()
    for token in analysis.ids[:index]:
        walked = model.advance(walked, int(token))
    # (Analysis runs the network in float32, completion in float64.)
    assert np.allclose(model.next_logprobs(analysis.state_before(index)), model.next_logprobs(walked), atol=1e-4)
    assert np.isclose(model.next_logprobs(walked)[analysis.ids[index]], analysis.logprob[index], atol=1e-4)


def test_analyses_overtaken_while_typing_add_up(models):
    """Typing in the middle of a document whose first analysis never finished: each analysis
    is stopped by the next key after a few steps, far fewer than a whole analysis takes, yet
    the work adds up past the place typed at (the scores after it do not depend on the key
    once the state has forgotten it), so the document is soon analysed to the end."""
    model = models["elman"]
    text = SMALL_TEXT * 60
    middle = text.index("\n\n", len(text) // 2)
    alone = DocumentAnalysis(model, text, run=False)
    assert sum(1 for _ in alone.steps()) > 20
    analysis = None
    for typed in range(40):
        text = text[:middle] + "cat dog fox mat "[typed % 16] + text[middle:]  # a key, at the same place
        analysis = DocumentAnalysis(model, text, analysis, run=False)
        for _, _ in zip(range(4), analysis.steps()):
            pass
    assert analysis.stream.done == len(analysis.stream.ids)
    assert np.allclose(DocumentAnalysis(model, text, analysis).bits, DocumentAnalysis(model, text).bits, atol=1e-3, rtol=0)


def test_a_long_line_is_tokenized_in_steps(models):
    """An 8,000-word line (a soft-wrapped chapter) is not one uninterruptible step: an editor's
    completion can run while it is read."""
    model = models["ngram"]
    text = "The cat sat on the mat. " * 1500  # one line, 10,500 tokens
    analysis = DocumentAnalysis(model, text, run=False)
    steps = analysis.steps()
    next(steps)
    assert not analysis.tokenized  # paused inside the line
    for _ in steps:
        pass
    fresh = DocumentAnalysis(model, text)
    assert analysis.complete and analysis.texts == fresh.texts and np.array_equal(analysis.starts, fresh.starts)
