"""Completion through the prefix index, and sampling's knobs."""

import numpy as np
import pytest

from engine.complete import PrefixIndex, cased_completions, predict, shown_completions, top_completions
from engine.corpus import corpus_from_text
from engine.generate import detokenize, generate, sample
from engine.plugins import get_backend


@pytest.fixture(scope="module")
def model(small_corpus):
    cls = get_backend("ngram").cls
    return cls.fit(small_corpus, cls.Options(order=3))


def test_prefix_index_finds_exactly_the_words_with_the_prefix(model):
    index = PrefixIndex(model.vocab)
    words = {model.vocab.tokens[i] for i in index.candidates("ca")}
    assert words == {t for t in model.vocab.tokens if t.lower().startswith("ca")} == {"cat", "cats", "Cats"}
    assert {model.vocab.tokens[i] for i in index.candidates("Ca")} == {"Cats"}  # capitals: exact case
    assert len(index.candidates("zz")) == 0
    assert not {"<s>", "</s>", "<unk>"} & {model.vocab.tokens[i] for i in index.candidates("")}


def test_words_looked_up_in_the_stored_sorted_words_have_their_ids(model, tmp_path):
    """A fresh process (``foretell predict``) looks its few words up in the sorted words kept
    with the model, not in a dict of the whole vocabulary built first; both give the same ids."""
    from engine.vocab import Vocabulary

    model.vocab.save(tmp_path)
    loaded = Vocabulary.load(tmp_path)
    assert [loaded.get(t) for t in [*loaded.tokens, "nope"]] == [*range(len(loaded.tokens)), None]
    assert "ids" not in loaded.__dict__ and "cat" in loaded and "nope" not in loaded
    assert list(PrefixIndex(loaded).candidates("ca")) == list(PrefixIndex(model.vocab).candidates("ca"))
    assert loaded.ids == model.vocab.ids


def test_completions_are_ranked_by_the_model(model):
    dist = model.next_logprobs(model.advance(model.initial_state(), model.vocab.id("The")))
    ranked = top_completions(model, dist, "", 50)
    assert [lp for _, lp in ranked] == sorted((lp for _, lp in ranked), reverse=True)
    assert model.vocab.tokens[ranked[0][0]] in {"cat", "dog"}


def test_predict_distinguishes_next_word_from_partial_word(model):
    assert predict(model, "The cat sat on the ", 1).predictions[0][0] == "mat"
    partial = predict(model, "The quick bro", 3)
    assert partial.prefix == "bro" and [w for w, _ in partial.predictions] == ["brown"]
    new_sentence = predict(model, "The dog ran. ", 5)
    assert new_sentence.context == [] and new_sentence.predictions[0][0] in {"The", "A"}


def test_top_k_and_top_p_restrict_sampling():
    logprobs = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(0)
    assert {sample(logprobs, rng, top_k=2) for _ in range(300)} == {0, 1}
    assert {sample(logprobs, rng, top_p=0.75) for _ in range(300)} == {0, 1}
    assert {sample(logprobs, rng, temperature=0) for _ in range(10)} == {0}
    draws = [sample(logprobs, rng, temperature=5.0) for _ in range(2000)]
    assert np.bincount(draws, minlength=4)[3] > 0.1 * 2000  # flatter at high temperature


def test_generation_is_seeded_and_never_emits_unk(model):
    a = generate(model, "The", 40, seed=1)
    assert a == generate(model, "The", 40, seed=1) and a != generate(model, "The", 40, seed=2)
    assert "<unk>" not in a


def test_detokenize_glues_punctuation():
    assert detokenize(["cat", "sat", ",", "then", "(", "ran", ")", ".", "</s>", "Next"], after="The") == " cat sat, then (ran). Next"


UNSPACED_TEXT = "東京は日本の首都です。東京は大きい都市です。京都は古い都市です。\n\nเขาไปโรงเรียน เขาไปตลาด เธอไปโรงเรียน\n"


@pytest.fixture(scope="module")
def unspaced_model():
    cls = get_backend("ngram").cls
    return cls.fit(corpus_from_text(UNSPACED_TEXT), cls.Options(order=3))


def test_after_a_chinese_or_japanese_character_the_next_one_is_predicted(unspaced_model):
    result = predict(unspaced_model, "東", 3)
    assert result.prefix == "" and result.predictions[0][0] == "京"
    assert predict(unspaced_model, "東京", 1).predictions[0][0] == "は"
    mixed = predict(unspaced_model, "Tokyo: 京都は古い都", 1)  # mixed scripts: the context is the characters
    assert mixed.prefix == "" and mixed.predictions[0][0] == "市"


def test_a_thai_vowel_waiting_for_its_consonant_is_completed(unspaced_model):
    result = predict(unspaced_model, "เขาไปโรงเ", 2)
    assert result.prefix == "เ" and result.predictions[0][0] == "เรี"
    assert predict(unspaced_model, "เขาไปโร", 1).predictions[0][0] == "ง"  # a whole cluster: the next one


def test_detokenize_writes_unspaced_scripts_without_spaces():
    assert detokenize(["京", "都", "は", "Python", "の", "。", "</s>", "次"], after="東") == "京都はPythonの。次"
    assert detokenize(["ไป", "โร", "ง"], after="เขา") == "ไปโรง"


CASED_TEXT = """We deploy it with kubernetes every day. The cluster runs kubernetes and the dashboard.
Then kubernetes restarts the pods. The pods come back. The team likes kubernetes.
"""


@pytest.fixture(scope="module")
def cased_model():
    cls = get_backend("ngram").cls
    return cls.fit(corpus_from_text(CASED_TEXT * 3), cls.Options(order=3))


@pytest.fixture(scope="module")
def lowercase_model():
    cls = get_backend("ngram").cls
    return cls.fit(corpus_from_text(CASED_TEXT.lower() * 3), cls.Options(order=3))


def test_completions_keep_the_case_the_user_typed(cased_model):
    assert "Kubernetes" not in cased_model.vocab.ids
    assert [w for w, _ in predict(cased_model, "Restart Kub", 3).predictions] == ["Kubernetes"]
    assert [w for w, _ in predict(cased_model, "Restart KUB", 3).predictions] == ["KUBERNETES"]
    assert [w for w, _ in predict(cased_model, "Restart kub", 3).predictions] == ["kubernetes"]
    assert predict(cased_model, "Restart kUb", 3).predictions == []  # mixed case: exact words only


def test_spellings_that_come_out_the_same_are_one_completion(cased_model):
    """At "TH" the model's "The" and "the" are both "THE": offered once, their probabilities
    added. At "T", where the model knows both, each keeps its own probability: the lowercase
    one is not offered."""
    dist = cased_model.next_logprobs(cased_model.initial_state())
    upper = cased_completions(cased_model, dist, "TH", 10)
    assert [text for text, _, _ in upper].count("THE") == 1
    the = dict((text, lp) for text, lp, _ in upper)["THE"]
    assert the == pytest.approx(np.logaddexp(dist[cased_model.vocab.id("The")], dist[cased_model.vocab.id("the")]))
    title = {text: lp for text, lp, _ in cased_completions(cased_model, dist, "T", 10)}
    assert title["The"] == pytest.approx(dist[cased_model.vocab.id("The")]) and "the" not in title


def test_a_sentence_start_takes_a_capital_as_the_text_does(lowercase_model, cased_model):
    """A model trained on lowercased text offers "The" after a capitalised sentence, "the" after
    a lowercase one, and, with no sentence before, what the model itself expects."""
    assert "The" not in lowercase_model.vocab.ids
    lowercase = [w for w, _ in predict(lowercase_model, "the pods come back. ", 5).predictions]
    capitalised = [w for w, _ in predict(lowercase_model, "The pods come back. ", 5).predictions]
    assert "the" in lowercase and all(w == w.lower() for w in lowercase)
    assert capitalised == [w[0].upper() + w[1:] for w in lowercase]
    assert [w for w, _ in predict(lowercase_model, "", 5).predictions] == lowercase
    assert all(w[0].isupper() for w, _ in predict(cased_model, "", 3).predictions if w[0].isalpha())
    assert "the" in [w for w, _ in predict(lowercase_model, "The pods come back. Then ", 5).predictions]  # not mid-sentence


def test_the_typist_accepts_a_capitalised_word_the_model_knows_in_lowercase(lowercase_model):
    from engine.evaluate import evaluate, keystrokes_for
    from engine.tokenizer import tokenize

    dist = lowercase_model.next_logprobs(lowercase_model.initial_state())
    assert keystrokes_for(lowercase_model, dist, "The", 5, capital=True) == (1, 1, True)
    assert keystrokes_for(lowercase_model, dist, "The", 5) != (1, 1, True)
    first = evaluate(lowercase_model, [tokenize("The pods come back.")]).keystrokes
    assert evaluate(lowercase_model, [tokenize("The pods come back. The")]).keystrokes == first + 1  # offered after a capital


@pytest.fixture(scope="module")
def animals():
    """After "we saw a": cat, car, cab, cap, can, then cow, then dog."""
    cls = get_backend("ngram").cls
    counts = {"cat": 10, "car": 9, "cab": 8, "cap": 7, "can": 6, "cow": 5, "dog": 4}
    text = "".join(f"we saw a {word} .\n" * n for word, n in counts.items())
    return cls.fit(corpus_from_text(text, pretokenized=True), cls.Options(order=3))


def test_words_typed_past_make_room_for_new_ones_as_presage_does(animals):
    """A word offered at an earlier keystroke of the same word and typed past goes after the new
    ones: at "c" the five words offered before the first letter give way to "cow", one keystroke
    sooner than when they are offered again (Presage: REPEAT_SUGGESTIONS no)."""
    from engine.evaluate import keystrokes_for

    model = animals
    dist = model.next_logprobs(model.advance_many(model.initial_state(), [model.vocab.id(w) for w in ("we", "saw", "a")]))
    first = [text for text, _, _ in shown_completions(model, dist, "", 5)]
    assert first == ["cat", "car", "cab", "cap", "can"]
    assert [text for text, _, _ in shown_completions(model, dist, "c", 5, passed=first)][0] == "cow"
    assert [text for text, _, _ in shown_completions(model, dist, "c", 6, passed=first)] == ["cow", *first]  # kept where room is
    assert keystrokes_for(model, dist, "cow", 5) == (2, 1, True)  # "c", then accept
    assert predict(model, "we saw a c", 5, passed=lambda prefix: first if prefix == "c" else ()).predictions[0][0] == "cow"
    assert predict(model, "we saw a c", 5).predictions[0][0] == "cat"


def test_the_server_knows_the_word_being_typed_in_a_paragraph_longer_than_its_window(animals):
    """Completion reads at most 2,000 characters before the cursor, so in a long paragraph that
    window moves with each keystroke; the word being typed is still known as the same one."""
    from lsprotocol import types

    from lsp_server.features.completion import EarlierOffers, completion_list

    earlier = EarlierOffers()
    earlier.LOOKED_AT_S = 0  # (the user looked at each list)
    text = "we saw a cow . " * 200 + "we saw a "
    at = lambda t: types.Position(line=0, character=len(t))  # noqa: E731
    first, shown = completion_list(animals, text, at(text), 5, earlier=earlier)
    earlier.sent(shown)
    assert [i.label for i in first.items][:5] == ["cat", "car", "cab", "cap", "can"]
    typed, _ = completion_list(animals, text + "c", at(text + "c"), 5, earlier=earlier)
    assert typed.items[0].label == "cow"


def test_the_inline_continuation_starts_a_sentence_with_a_capital(lowercase_model):
    from lsp_server.features.completion import continuation

    lowercase = continuation(lowercase_model, "the team likes kubernetes. ", 4, 0.05)
    assert lowercase and lowercase[0].islower()
    assert continuation(lowercase_model, "The team likes kubernetes. ", 4, 0.05) == lowercase[0].upper() + lowercase[1:]
    assert continuation(lowercase_model, "The team likes Kub", 4, 0.05) == "ernetes."


def test_history_is_read_from_the_last_sentences_holding_enough_tokens(model):
    """A model with memory reads the last whole sentences of at least HISTORY_TOKENS tokens of
    the user's earlier text; older text is not read, and a sentence-independent model starts
    afresh whatever came before."""
    from engine.complete import HISTORY_TOKENS, state_after_history
    from engine.tokenizer import tokenize

    cache = get_backend("cache").cls
    remembering = cache.fit(corpus_from_text("dog cat\n" * 5), cache.Options(size=10 * HISTORY_TOKENS))
    dog = remembering.vocab.id("dog")
    filler = tokenize("cat " * 99 + "cat.")  # 100 words and </s>
    for fillers, read in ((HISTORY_TOKENS // 101 - 1, True), (HISTORY_TOKENS // 101 + 1, False)):
        state = state_after_history(remembering, tokenize("dog.") + filler * fillers)
        assert (dog in state) == read
    assert state_after_history(model, tokenize("The cat sat.")) == model.initial_state()


def test_the_servers_history_reads_other_documents_and_keeps_no_old_model_alive():
    import gc
    import weakref

    from lsp_server.features.history import RecentWriting

    cache = get_backend("cache").cls
    model = cache.fit(corpus_from_text("dog cat bird\n" * 5), cache.Options())
    recent = RecentWriting()
    recent.remember("file:///a.md", "dog dog dog.")
    assert recent.needs_refresh("file:///b.md", None) and not recent.needs_refresh("file:///b.md", None)  # one refresh at a time
    recent.refresh(lambda: model, "file:///b.md")
    state = recent.kept(model, "file:///b.md")
    assert list(state).count(model.vocab.id("dog")) == 3 and recent.kept(model, "file:///a.md") is None  # not its own text
    old = weakref.ref(model)
    del model, state
    gc.collect()
    assert old() is None
