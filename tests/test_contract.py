"""The model contract, run over every registered backend (and each n-gram smoothing), so a new
backend gets the whole suite for free."""

import math

import numpy as np
import pytest

from engine.model import options_from_strings
from engine.plugins import backends
from engine.scoring import encode, perplexity, perplexity_of_scores, score_tokens
from engine.store import ModelStore
from engine.tokenizer import tokenize
from engine.vocab import BOS_ID, UNK_ID
from tests.conftest import require_compiled

HELD_OUT = "The cat sat on the log. A fox met the dog on the warm mat. Zebras are unknown here."

TINY = {"rnn": {"hidden": "16", "embedding": "16", "epochs": "2"}, "window": {"hidden": "16", "embedding": "8", "epochs": "2"}}
QUANTIZED = "(int8)"  # not an option: the fitted model's quantized copy (`foretell models optimize`)
VARIANTS = [(name, TINY.get(name, {})) for name in sorted(backends())] + [
    ("rnn", {"cell": "lstm", "hidden": "16", "embedding": "16", "layers": "1", "epochs": "1", "tied": "true", "softmax": "full"}),
    ("rnn", {"cell": "gru", "hidden": "16", "embedding": "16", "epochs": "1", "optimizer": "adam", "lr": "0.01"}),
    ("window", {"direct": "true", "window": "2", "hidden": "8", "embedding": "8", "epochs": "1", "softmax": "full"}),
    ("rnn", {"softmax": "full", "hidden": "16", "embedding": "16", "epochs": "1"}),
    ("rnn", {"tied": "false", "hidden": "16", "embedding": "16", "epochs": "1"}),
    ("rnn", {"hidden": "16", "embedding": "16", "epochs": "1", QUANTIZED: True}),  # an Elman: tied by default
    ("rnn", {"cell": "lstm", "hidden": "16", "embedding": "16", "epochs": "1", QUANTIZED: True}),
    ("window", {"hidden": "16", "embedding": "8", "epochs": "1", QUANTIZED: True}),
    ("cache", {"size": "5", "floor": "0.5"}),
    ("mix", {"parts": "rnn"}),
    ("ngram", {"smoothing": "add-k"}),
    ("ngram", {"smoothing": "stupid-backoff"}),
    ("ngram", {"order": "1"}),
    ("ngram", {"order": "6"}),
]


@pytest.fixture(params=VARIANTS, ids=lambda v: v[0] + "".join(f"-{k}={x}" for k, x in v[1].items()))
def model(request, small_corpus):
    name, options = request.param
    cls = backends()[name].cls
    if name == "mix":  # made from trained models in the store, not from a corpus
        return mixture_of(["ngram", "cache", options.get("parts", "window")], small_corpus)
    options = dict(options)
    quantized = options.pop(QUANTIZED, False)
    model = cls.fit(small_corpus, options_from_strings(cls.Options, options))
    return model.quantized() if quantized else model


def mixture_of(backend_names, corpus):
    store = ModelStore()
    for name in backend_names:
        cls = backends()[name].cls
        store.save(name, cls.fit(corpus, options_from_strings(cls.Options, TINY.get(name, {}))))
    return backends()["mix"].cls.combine(store.load_parts(backend_names), backend_names, [0.5, 0.3, 0.2])


def states_along(model, ids):
    """(state, token) along a stream; ``advance(state, </s>)`` already opens the next sentence,
    so its <s> is not fed again."""
    state = model.initial_state()
    for token in ids:
        yield state, token
        if token != BOS_ID:
            state = model.advance(state, token)


def test_next_token_distribution_sums_to_one(model):
    ids = encode(model, tokenize(HELD_OUT))
    for state, token in states_along(model, ids[1:]):
        dist = model.next_logprobs(state)
        assert dist.shape == (len(model.vocab),)
        assert dist[BOS_ID] == -np.inf
        assert math.isclose(np.exp(dist).sum(), 1.0, rel_tol=1e-5)


def test_incremental_scoring_equals_scoring_at_once(model):
    ids = encode(model, tokenize(HELD_OUT))
    at_once = model.score_ids(ids)
    assert np.isnan(at_once[ids == BOS_ID]).all()
    incremental = [model.next_logprobs(state)[token] for state, token in states_along(model, ids[1:])]
    scored = ids[1:] != BOS_ID
    assert np.allclose(np.array(incremental)[scored], at_once[1:][scored], rtol=0, atol=model.score_tolerance)


def test_token_surprisals_sum_to_the_sequence_and_perplexity_is_two_to_the_mean(model):
    sentences = tokenize(HELD_OUT)
    scores = score_tokens(model, sentences)
    report = perplexity(model, sentences)
    total_bits = sum(s.surprisal_bits for s in scores)
    assert len(scores) == report.tokens
    assert total_bits == pytest.approx(-report.log10_prob * math.log2(10), rel=1e-9)
    assert report.perplexity == pytest.approx(2 ** (total_bits / len(scores)), rel=1e-9)
    assert perplexity_of_scores(scores) == pytest.approx(report.perplexity, rel=1e-9)
    assert all(s.rank >= 1 and s.entropy_bits >= 0 for s in scores)
    assert any(s.oov for s in scores) and scores[-1].token == "</s>" and scores[-1].start is None


def test_save_and_load_give_identical_scores(model):
    store = ModelStore()
    store.save("roundtrip", model)
    loaded = store.load("roundtrip")
    ids = encode(model, tokenize(HELD_OUT))
    assert np.array_equal(model.score_ids(ids), loaded.score_ids(ids), equal_nan=True)
    assert loaded.vocab.tokens == model.vocab.tokens
    state = loaded.advance(loaded.initial_state(), loaded.vocab.id("The"))
    assert np.array_equal(model.next_logprobs(state), loaded.next_logprobs(state))


def test_after_end_of_sentence_the_state_starts_a_new_sentence(model):
    if not getattr(model, "sentence_independent", False):
        pytest.skip("this model carries its state across sentences")
    the = model.vocab.id("The")
    after_end = model.advance(model.advance(model.initial_state(), the), 2)
    assert np.array_equal(model.next_logprobs(after_end), model.next_logprobs(model.initial_state()))


def test_token_stats_equal_building_every_distribution(model):
    """A backend's fast rank/entropy (if it has one) must agree with the generic walk."""
    from engine.model import LanguageModel

    ids = encode(model, tokenize(HELD_OUT + " The cat sat on the mat. The fox ran over the dog."))
    fast = model.token_stats(ids)
    slow = LanguageModel.token_stats(model, ids)
    assert np.array_equal(fast[1], slow[1])
    assert np.allclose(fast[0], slow[0], atol=model.score_tolerance, equal_nan=True)
    assert np.allclose(fast[2], slow[2], atol=model.score_tolerance, equal_nan=True)


def test_advancing_many_tokens_at_once_equals_one_by_one(model):
    ids = [int(t) for t in encode(model, tokenize(HELD_OUT))[1:] if t != BOS_ID]
    one_by_one = model.initial_state()
    for token in ids:
        one_by_one = model.advance(one_by_one, token)
    at_once = model.advance_many(model.initial_state(), ids)
    assert np.allclose(model.next_logprobs(at_once), model.next_logprobs(one_by_one), atol=model.score_tolerance, rtol=0)


def test_document_analysis_after_edits_equals_a_fresh_one(model):
    """What the editor shows: the incremental analysis after random edits, for every backend,
    equals analysing the text afresh (within 1e-3 bits), and agrees with scoring the document's
    stream in one pass (float32 analysis of neural models: within 1e-4 nats)."""
    import random

    from engine.analysis import DocumentAnalysis
    from tests.conftest import SMALL_TEXT

    rng = random.Random(7)
    text = SMALL_TEXT * 2
    analysis = DocumentAnalysis(model, text)
    for _ in range(6):
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice([" the dog", ". A fox ran", "\n\n", ""]) + text[at + rng.randrange(0, 12) :]
        analysis = DocumentAnalysis(model, text, analysis)
        fresh = DocumentAnalysis(model, text)
        assert analysis.texts == fresh.texts
        assert np.allclose(analysis.bits, fresh.bits, atol=1e-3, rtol=0)
    ids = encode(model, tokenize(text))
    logprob, rank, entropy = model.token_stats(ids)
    scored = ids != BOS_ID
    assert np.allclose(analysis.logprob, logprob[scored], atol=1e-4, rtol=0)
    assert np.allclose(analysis.entropy, entropy[scored], atol=1e-3, rtol=0)
    assert np.mean(analysis.rank == rank[scored]) > 0.97


def test_expected_words_at_a_token_come_from_the_context_it_was_scored_in(model):
    """Hover shows a token's bits and the words the model expected there: the distribution it
    reads those words from gives the token the very log-probability shown beside them."""
    from engine.analysis import DocumentAnalysis
    from tests.conftest import SMALL_TEXT

    analysis = DocumentAnalysis(model, SMALL_TEXT * 2)
    for index in range(0, len(analysis.ids), 5):
        dist = model.next_logprobs(analysis.state_before(index))
        assert abs(dist[analysis.ids[index]] - analysis.logprob[index]) < 1e-4


# -- optional abilities (engine.capabilities): every one claimed is exercised ---------------------


def _exports_arpa(model, tmp_path):
    from engine.capabilities import ImportsArpa, backend_with
    from engine.errors import ForetellError

    path = tmp_path / "model.arpa"
    try:
        model.export_arpa(path)
    except ForetellError as exc:  # a model that has no ARPA form says so (add-k)
        assert "no ARPA form" in str(exc)
        return
    back = backend_with(ImportsArpa, "read ARPA").cls.from_arpa(path)
    ids = encode(model, tokenize(HELD_OUT))
    assert np.allclose(back.score_ids(encode(back, tokenize(HELD_OUT))), model.score_ids(ids), atol=1e-5, equal_nan=True)


def _quantizable(model, tmp_path):
    from engine.errors import ForetellError

    if model.score_tolerance > 1e-9:  # quantized already
        return
    try:
        small = model.quantized()
    except ForetellError as exc:  # a model with nothing to quantize says so (add-k)
        assert "no backoff tables" in str(exc)
        return
    ids = encode(model, tokenize(HELD_OUT))
    assert np.allclose(small.score_ids(ids), model.score_ids(ids), atol=0.5, equal_nan=True)


def _training_curves(model, tmp_path):
    assert model.metrics and all({"epoch", "valid_perplexity", "train_loss"} <= row.keys() for row in model.metrics)


def _gradients(model, tmp_path):
    norms = model.gradient_norms(encode(model, tokenize(HELD_OUT * 3)), 5, 8)
    assert norms.shape == (6,) and np.all(np.isfinite(norms)) and norms[0] > 0


def _learnable(model, tmp_path):
    from engine.errors import ForetellError

    try:
        model.check_can_learn()
    except ForetellError as exc:  # an 8-bit copy: its original learns
        assert "quantized copy" in str(exc)
        return
    vocab = list(model.vocab.tokens)
    new = [len(vocab)]
    stream = np.array([BOS_ID, new[0], model.vocab.id("cat"), model.vocab.ids["</s>"]] * 3)
    learned = model.with_documents(["zyzzyva"], [stream])
    assert "zyzzyva" in learned.vocab
    known = stream != new[0]  # the learned text's known words are likelier than before
    before, after = model.score_ids(np.where(known, stream, UNK_ID)), learned.score_ids(stream)
    assert np.nansum(after[known]) > np.nansum(before[known])
    state = learned.advance(learned.initial_state(), learned.vocab.id("zyzzyva"))
    assert np.exp(learned.next_logprobs(state)).sum() == pytest.approx(1.0, abs=1e-5)


def _combines(model, tmp_path):
    again = type(model).from_parts(model.parts, model.options)
    ids = encode(model, tokenize(HELD_OUT))
    assert np.allclose(again.score_ids(ids), model.score_ids(ids), equal_nan=True)
    assert type(model).part_names(model.options) == model.options.names


def _prunable(model, tmp_path):
    from engine.errors import ForetellError

    total = sum(len(k) for k in model.keys)
    try:
        smaller = model.pruned(ngrams=total // 2)
    except ForetellError as exc:  # add-k has no backoffs to renormalise, unigrams nothing to drop
        assert "add-k" in str(exc) or "unigram" in str(exc)
        return
    assert total // 2 <= sum(len(k) for k in smaller.keys) < total
    state = smaller.initial_state()
    for token_id in encode(smaller, tokenize(HELD_OUT))[1:40]:
        assert np.exp(smaller.next_logprobs(state)).sum() == pytest.approx(1.0, abs=1e-5)
        state = smaller.advance(state, int(token_id))


def _ability_checks():
    from engine import capabilities as c

    return {c.ExportsArpa: _exports_arpa, c.Quantizable: _quantizable, c.HasTrainingCurves: _training_curves,
            c.DiagnosesGradients: _gradients, c.Learnable: _learnable, c.Prunable: _prunable}


def test_every_ability_has_a_check():
    """datasette's rule for hooks, for abilities: each protocol is exercised below."""
    import inspect

    from engine import capabilities

    protocols = {p for _, p in inspect.getmembers(capabilities, inspect.isclass) if getattr(p, "_is_protocol", False) and p.__module__ == capabilities.__name__}
    checked = set(_ability_checks()) | {capabilities.ImportsArpa, capabilities.CombinesModels}  # class abilities, in the checks
    assert protocols == checked


def test_every_ability_a_model_claims_works(model, tmp_path):
    from engine.capabilities import CombinesModels

    claimed = [check for ability, check in _ability_checks().items() if isinstance(model, ability)]
    if isinstance(type(model), CombinesModels):
        claimed.append(_combines)
    for check in claimed:
        check(model, tmp_path)


def test_ngram_ranks_in_pieces_equal_ranks_at_once(small_corpus, monkeypatch, ranking):
    """The n-gram ranks long streams a few sentences at a time (bounded memory), on two
    threads where a core is spare: the pieces give what one pass gives, with sentences longer
    than a piece ranked whole."""
    import plugins.ngram.model as ngram

    model = backends()["ngram"].cls.fit(small_corpus, backends()["ngram"].cls.Options(order=3))
    ids = encode(model, tokenize(HELD_OUT * 3 + " and the cat" * 20 + ". " + HELD_OUT))
    whole = model.token_stats(ids)
    monkeypatch.setattr(ngram, "STATS_CHUNK", 7)
    monkeypatch.setattr(ngram, "THREAD_PIECE", 4)
    pieces = model.token_stats(ids)
    for a, b in zip(whole, pieces):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.fixture(params=["numpy", "compiled"])
def ranking(request, monkeypatch):
    """Which of the n-gram's two ways of ranking runs: numpy's, or the C extension's where it
    was built at install (CI requires it: FORETELL_REQUIRE_COMPILED)."""
    import plugins.ngram.stats as stats

    if request.param == "compiled":
        require_compiled(stats.Tables, "plugins/ngram/_ranking.c")
    monkeypatch.setattr(stats, "USE_COMPILED", request.param == "compiled")
    return request.param


@pytest.mark.parametrize("variant", ["plain", "pruned", "quantized"])
def test_ngram_ranks_from_contexts_kept_between_calls_equal_every_distribution(small_corpus, monkeypatch, variant, ranking):
    """Ranking keeps the contexts it has worked out with the model for later calls, until its
    room is full: ranks and entropies from kept contexts, from fresh ones and from a mixture
    equal building every distribution, for a plain model, a pruned one (whose lower-order
    values carry backoffs) and a quantized one."""
    import plugins.ngram.stats as stats
    from engine.model import LanguageModel

    model = backends()["ngram"].cls.fit(small_corpus, backends()["ngram"].cls.Options(order=4))
    if variant == "pruned":
        model = model.pruned(ngrams=sum(len(k) for k in model.keys) * 2 // 3)
    elif variant == "quantized":
        model = model.quantized()
    monkeypatch.setattr(stats, "KEPT_FROM", 1)
    monkeypatch.setattr(stats, "KEPT_VALUES", 40)  # room for a few contexts only: later ones are worked out each call
    monkeypatch.setattr(stats, "POOL_VALUES", 0)  # (the compiled cache: room for the vocabulary's size, its least)
    texts = [HELD_OUT, HELD_OUT + " The cat sat on the mat. The fox ran over the dog.", "The dog sat on the log. " + HELD_OUT] * 2
    for text in texts:
        ids = encode(model, tokenize(text))
        fast, slow = model.token_stats(ids), LanguageModel.token_stats(model, ids)
        assert np.array_equal(fast[1], slow[1])
        assert np.allclose(fast[2], slow[2], atol=model.score_tolerance, equal_nan=True)
    if ranking == "numpy":
        kept = model._ranking[2]
        assert 0 < kept.filled <= 40 and len(kept.table.contexts) > 1


@pytest.mark.parametrize("variant", ["fitted", "saved", "pruned", "quantized", "order 6", "wide"])
def test_ngram_compiled_ranking_equals_numpy_ranking(small_corpus, monkeypatch, variant):
    """The C extension ranks exactly as numpy does (entropies within a rounding of 10^x) on
    the arrays a model can hold: fitted in memory, read back packed from the store, pruned,
    8-bit, of a higher order, with contexts of hundreds of continuations (sorted otherwise than
    a few); first from contexts worked out afresh, then from kept ones; on one thread and on
    two."""
    import random

    import plugins.ngram.stats as stats
    from engine.corpus import corpus_from_text

    require_compiled(stats.Tables, "plugins/ngram/_ranking.c")
    ngram = backends()["ngram"].cls
    corpus = small_corpus
    if variant == "wide":  # "the" and "a" followed by 600 words, some often (values that tie, and that do not)
        rng = random.Random(5)
        words = [f"w{i}" for i in range(600)]
        corpus = corpus_from_text(" ".join(f"{rng.choice(['The', 'A'])} {rng.choice(words[: rng.choice([5, 50, 600])])} {rng.choice(words)}." for _ in range(4000)))
    model = ngram.fit(corpus, ngram.Options(order=6 if variant == "order 6" else 4))
    if variant == "saved":
        ModelStore().save("ranked", model)
        model = ModelStore().load("ranked")
    elif variant == "pruned":
        model = model.pruned(ngrams=sum(len(k) for k in model.keys) // 2)
    elif variant == "quantized":
        model = model.quantized()
    text = HELD_OUT + " The cat sat on the mat. " * 3 + HELD_OUT + " The fox ran over the dog on the mat."
    if variant == "wide":
        text += " ".join(f"The w{i} w{i * 7 % 600}. A w{i * 3 % 600} w{i}." for i in range(0, 600, 7))
    ids = encode(model, tokenize(text))
    expected = model._token_stats(ids)  # (numpy's)
    for threads, chunk in [(1, 2048), (2, 2048), (2, 7)]:  # (two threads taking a few positions at a time: both work contexts out)
        tables = stats._make_tables(model)
        for _ in range(2):
            got = np.empty(len(ids)), np.empty(len(ids), dtype=np.int64), np.empty(len(ids))
            tables.stats(BOS_ID, ids, *got, threads, chunk)
            assert np.array_equal(got[0], expected[0], equal_nan=True)
            assert np.array_equal(got[1], expected[1])
            assert np.allclose(got[2], expected[2], rtol=1e-13, atol=0, equal_nan=True)



def test_ngram_ranks_where_lower_order_ngrams_are_missing_equal_every_distribution(tmp_path, ranking):
    """An imported ARPA file may hold "a b c" without "b c" (pruned by another tool): the
    lower-order value of c after "a b" then carries b's backoff, and ranking codes such values
    by their place among all of them rather than by their float32 bits."""
    from engine.model import LanguageModel

    arpa = tmp_path / "missing.arpa"
    arpa.write_text(
        "\\data\\\nngram 1=7\nngram 2=6\nngram 3=3\n\n\\1-grams:\n"
        "-1.2\t</s>\n-99\t<s>\t-0.4\n-2.0\t<unk>\n-0.9\ta\t-0.3\n-1.1\tb\t-0.3\n-1.3\tc\t-0.2\n-0.7\td\t-0.1\n\n"
        "\\2-grams:\n-0.5\t<s> a\t-0.2\n-0.6\ta b\t-0.15\n-0.8\tb d\t-0.1\n-0.9\ta c\n-0.4\tc </s>\n-0.3\td </s>\n\n"
        "\\3-grams:\n-0.2\t<s> a b\n-0.1\ta b c\n-0.35\ta b d\n\n\\end\\\n"
    )
    model = backends()["ngram"].cls.from_arpa(arpa)
    ids = encode(model, tokenize("a b c. a b d. b c a. a b c d.", pretokenized=False))
    fast, slow = model.token_stats(ids), LanguageModel.token_stats(model, ids)
    assert np.array_equal(fast[1], slow[1])
    assert np.allclose(fast[2], slow[2], atol=1e-9, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_run_values_count_what_exceeds_a_threshold_as_counting_does(dtype):
    """Ranking's counts of values above a threshold within a run, against counting them."""
    from plugins.ngram.stats import RunValues

    rng = np.random.default_rng(3)
    runs = np.sort(rng.integers(0, 40, 3000))
    values = (-rng.random(3000) * 7).astype(dtype)
    values[:8] = [0.0, -0.0, -1e-30, 1e-30, -7.5, -7.5, -np.inf, -2.0]
    stored = RunValues.of(runs, values)
    assert (stored.codebook is None) == (dtype == np.float32)
    ends = np.cumsum(np.bincount(runs, minlength=40))
    run = rng.integers(0, 40, 500)
    x = np.concatenate([values[rng.integers(0, 3000, 250)].astype(np.float64), -rng.random(250) * 8])
    x[:5] = [-7.5, -np.inf, 0.0, np.nextafter(np.float64(np.float32(-2.0)), 0), -0.0]
    run[:5] = runs[0]  # (the run that holds the awkward values)
    expected = [int((values[runs == r] > t).sum()) for r, t in zip(run, x)]
    assert stored.count_greater(run, ends[run], x).tolist() == expected
