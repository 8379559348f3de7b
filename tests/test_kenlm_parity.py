"""Kneser-Ney must be KenLM's lmplz number for number, and ARPA must travel both ways."""

import gzip
import math
import re
from pathlib import Path

import numpy as np
import pytest

from engine.corpus import build_corpus
from engine.scoring import perplexity
from engine.tokenizer import tokenize
from engine.vocab import BOS_ID
from plugins.ngram.arpa import read_arpa
from plugins.ngram.model import NgramModel, NgramOptions
from tests.conftest import KENLM

REFERENCE_PPL = {3: (358.02961898604855, 284.00951863819284), 5: (353.5320179747805, 280.49350206622125)}


@pytest.fixture(scope="module", params=[3, 5])
def trained(request, ptb):
    corpus = build_corpus([str(ptb / "ptb5k.train.txt")], pretokenized=True)
    return request.param, NgramModel.fit(corpus, NgramOptions(order=request.param))


def valid_sentences(ptb):
    return tokenize((ptb / "ptb500.valid.txt").read_text(), pretokenized=True)


def lmplz_statistics(order):
    rows = {}
    for line in (KENLM / f"ptb5k.o{order}.lmplz-statistics.txt").read_text().splitlines()[1:]:
        m = re.match(r"(\d+) (\d+) D1=(\S+) D2=(\S+) D3\+=(\S+)", line)
        rows[int(m.group(1))] = (int(m.group(2)), [float(m.group(i)) for i in (3, 4, 5)])
    return rows


def sentence_totals(model, sentences):
    from engine.scoring import encode
    from engine.vocab import BOS_ID

    ids = encode(model, sentences)
    logp = np.nan_to_num(model.score_ids(ids)) / math.log(10)
    return np.add.reduceat(logp, np.flatnonzero(ids == BOS_ID))


def test_ngram_counts_and_discounts_match_lmplz(trained):
    order, model = trained
    for k, (count, discounts) in lmplz_statistics(order).items():
        assert model.describe()["ngrams"][k - 1] == count
        assert model.facts["discounts"][k - 1] == pytest.approx(discounts, abs=6e-6)


def test_per_sentence_log10_matches_kenlm_query(trained, ptb):
    order, model = trained
    reference = [float(line.split()[0]) for line in (KENLM / f"ptb500.valid.kenlm-o{order}.sentence-log10.txt").read_text().splitlines()]
    ours = sentence_totals(model, valid_sentences(ptb))
    assert len(ours) == len(reference) == 500
    assert np.abs(ours - np.array(reference)).max() < 1e-4


def test_a_long_stream_scored_in_halves_on_two_threads_scores_as_its_sentences_apart(trained, ptb, monkeypatch):
    from engine.scoring import encode
    from plugins.ngram import model as ngram_model

    order, model = trained
    sentences = valid_sentences(ptb)
    monkeypatch.setattr(ngram_model, "THREAD_PIECE", 1000)  # the 500 sentences: 11,871 ids
    apart = np.concatenate([model.score_ids(encode(model, [s])) for s in sentences])
    assert np.array_equal(model.score_ids(encode(model, sentences)), apart, equal_nan=True)


def test_perplexity_matches_kenlm(trained, ptb):
    order, model = trained
    report = perplexity(model, valid_sentences(ptb))
    assert (report.tokens, report.oov) == (11371, 451)
    including, excluding = REFERENCE_PPL[order]
    assert report.perplexity == pytest.approx(including, rel=1e-6)
    assert report.perplexity_excluding_oov == pytest.approx(excluding, rel=1e-6)


def test_word_by_word_scores_match_kenlm(ptb):
    corpus = build_corpus([str(ptb / "ptb5k.train.txt")], pretokenized=True)
    model = NgramModel.fit(corpus, NgramOptions(order=5))
    reference = []
    with gzip.open(KENLM / "ptb500.valid.kenlm-o5.words.txt.gz", "rt") as f:
        for line in f:
            reference += [float(m) for m in re.findall(r"=\d+ \d+ (\S+)", line)]
    from engine.scoring import encode
    from engine.vocab import BOS_ID

    ids = encode(model, valid_sentences(ptb))
    ours = model.score_ids(ids)[ids != BOS_ID] / math.log(10)
    assert len(ours) == len(reference)
    assert np.abs(ours - np.array(reference)).max() < 1e-5


def test_every_ngram_probability_and_backoff_matches_the_lmplz_arpa(ptb):
    corpus = build_corpus([str(ptb / "ptb5k.train.txt")], pretokenized=True)
    model = NgramModel.fit(corpus, NgramOptions(order=3))
    vocab, keys, logp, backoff = read_arpa(KENLM / "ptb5k.o3.arpa.gz")
    assert vocab.tokens == model.vocab.tokens  # ids by first appearance, as lmplz numbers them
    for k in range(3):
        assert np.array_equal(keys[k], model.keys[k])
        # The ARPA text keeps 8 significant digits: at most one float32 ulp apart.
        assert np.abs(logp[k] - model.logp[k]).max() <= 2.5e-7
        if k < 2:
            assert np.abs(backoff[k] - model.backoff[k]).max() <= 1.2e-7


def test_imported_kenlm_arpa_scores_as_kenlm(ptb):
    model = NgramModel.from_arpa(KENLM / "ptb5k.o3.arpa.gz")
    reference = [float(line.split()[0]) for line in (KENLM / "ptb500.valid.kenlm-o3.sentence-log10.txt").read_text().splitlines()]
    assert np.abs(sentence_totals(model, valid_sentences(ptb)) - np.array(reference)).max() < 1e-4
    assert perplexity(model, valid_sentences(ptb)).perplexity == pytest.approx(REFERENCE_PPL[3][0], rel=1e-6)


def test_exported_arpa_read_by_kenlm_gives_our_figures(ptb, tmp_path):
    kenlm = pytest.importorskip("kenlm")  # installed by the test extra; skipped only by hand
    corpus = build_corpus([str(ptb / "ptb5k.train.txt")], pretokenized=True)
    model = NgramModel.fit(corpus, NgramOptions(order=4))
    path = tmp_path / "model.arpa"
    model.export_arpa(path)
    theirs = kenlm.Model(str(path))
    lines = (ptb / "ptb500.valid.txt").read_text().splitlines()[:200]
    ours = sentence_totals(model, tokenize("\n".join(lines) + "\n", pretokenized=True))
    kenlm_totals = np.array([theirs.score(line, bos=True, eos=True) for line in lines])
    assert np.abs(ours - kenlm_totals).max() < 1e-4
    # And back in: the round trip scores the same.
    again = NgramModel.from_arpa(path)
    assert np.abs(sentence_totals(again, tokenize("\n".join(lines) + "\n", pretokenized=True)) - ours).max() < 1e-5


def test_exported_arpa_is_no_larger_than_lmplzs_and_its_values_read_back_exactly(ptb, tmp_path, monkeypatch):
    """Streamed a few thousand n-grams at a time (a small chunk here, so every order spans
    several), each value the shortest decimal that reads back as the same float32."""
    import plugins.ngram.arpa as arpa

    monkeypatch.setattr(arpa, "ARPA_CHUNK", 5000)
    model = NgramModel.fit(build_corpus([str(ptb / "ptb5k.train.txt")], pretokenized=True), NgramOptions(order=3))
    path = tmp_path / "o3.arpa"
    model.export_arpa(path)
    # lmplz's own file of the same model: ours is 1.0 % larger here (some of our backoffs are a
    # float32 step from lmplz's, whose shortest decimal can be a digit longer), 0.02 % smaller at order 5.
    assert path.stat().st_size <= 1.015 * len(gzip.decompress((KENLM / "ptb5k.o3.arpa.gz").read_bytes()))
    vocab, keys, logp, backoff = read_arpa(path)
    for k in range(3):
        assert len(keys[k]) == len(model.keys[k])
        assert np.array_equal(np.sort(logp[k]), np.sort(model.logp[k]))  # bit for bit
        assert np.array_equal(np.sort(backoff[k]), np.sort(model.backoff[k]))
    values = [field for line in path.read_text().splitlines() if "\t" in line for field in line.split("\t")[::2]]
    shortest = [s.removesuffix(".0") for s in np.array(values, dtype=np.float32).astype(str).tolist()]
    assert values == shortest


def test_lmplz_tie_break_quirk_uses_raw_count_of_the_last_ngrams_suffixes():
    """The N-gram lmplz sorts last counts its suffixes' raw counts in the counts of counts."""
    from engine.corpus import corpus_from_text
    from plugins.ngram.counts import count_ngrams
    from plugins.ngram.smoothing import adjusted_counts, count_of_counts

    # "z" gets the highest id and ends the last N-gram; it occurs 3 times after one word.
    corpus = corpus_from_text("a b\nb a\nc z\nc z\nc z\na c\n", pretokenized=True)
    counts = count_ngrams(corpus.ids, 2, len(corpus.vocab))
    adjusted = adjusted_counts(counts)
    z = corpus.vocab.id("z")
    assert counts.last_suffixes[0] == z
    assert adjusted[0][z] == 1 and counts.orders[0].counts[z] == 3
    unigram_stats = count_of_counts(counts, adjusted)[0]
    plain = np.bincount(np.minimum(adjusted[0], 5), minlength=6)[1:5]
    assert unigram_stats[2] == plain[2] + 1 and unigram_stats[0] == plain[0] - 1


def test_unique_inverse_is_numpys_unique_whether_or_not_keys_pack_with_their_positions():
    # Small keys are sorted packed with their positions (one np.sort); keys too large for that,
    # or negative, take argsort: the answers must be np.unique's either way, first indices too.
    from plugins.ngram.search import sorted_search, unique_inverse

    rng = np.random.default_rng(7)
    for dtype, high in ((np.uint64, 50), (np.uint64, 1 << 40), (np.uint64, 1 << 63), (np.int64, 1 << 20)):
        for n in (0, 1, 2, 1000):
            values = rng.integers(0, high, n, dtype=np.uint64).astype(dtype)
            unique, first, inverse, counts = unique_inverse(values, first=True)
            expected = np.unique(values, return_index=True, return_inverse=True, return_counts=True)
            for got, want in zip((unique, first, inverse, counts), expected):
                assert np.array_equal(got, want) and unique.dtype == values.dtype
            table = np.unique(values)
            assert np.array_equal(sorted_search(table, values), np.searchsorted(table, values))
    signed = np.array([-3, 5, -3, 0])
    assert np.array_equal(unique_inverse(signed)[1], [0, 2, 0, 1])


def test_a_small_memory_budget_gives_the_same_model_bit_for_bit(ptb, tmp_path):
    """Under a small budget the counts, the estimate and the saved model are worked through
    files a block at a time (a budget of 256 KB here: tables of over 16 KB are files, blocks of
    2,048 n-grams cut at context boundaries): every array equals the in-memory build's, and the
    model files are byte for byte the same."""
    from plugins.ngram import counts as C
    from plugins.ngram.scratch import Scratch
    from plugins.ngram.smoothing import kneser_ney

    corpus = build_corpus([str(ptb / "ptb5k.train.txt")], pretokenized=True)
    ids, V = np.asarray(corpus.ids), len(corpus.vocab)
    whole = C.count_ngrams(ids, 5, V)
    expected = kneser_ney(whole)
    (tmp_path / "scratch").mkdir()
    scratch = Scratch(tmp_path / "scratch", 256 << 10)
    small = C.count_ngrams(ids, 5, V, scratch=scratch)
    assert any(isinstance(o.keys, np.memmap) for o in small.orders)  # (the budget did send tables to files)
    for a, b in zip(whole.orders, small.orders):
        for field in ("keys", "counts", "suffix", "starts_bos"):
            if getattr(a, field) is not None:
                assert np.array_equal(getattr(a, field), getattr(b, field)), field
    got = kneser_ney(small, scratch=scratch)
    assert got.facts == expected.facts
    for column in ("logp", "backoff"):
        for a, b in zip(getattr(expected, column), getattr(got, column)):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), column
    folders = []
    for counts, tables in ((whole, expected), (small, got)):
        folders.append(tmp_path / f"model{len(folders)}")
        folders[-1].mkdir()
        NgramModel(corpus.vocab, NgramOptions(order=5), [o.keys for o in counts.orders], tables.logp, tables.backoff,
                   [o.counts for o in counts.orders]).save(folders[-1])
    names = sorted(f.name for f in folders[0].iterdir())
    assert names == sorted(f.name for f in folders[1].iterdir()) and "counts.npz" in names
    for name in names:  # (the zip of the counts holds the time it was written: its arrays are compared)
        read = (lambda f: [np.load(f)[n].tobytes() for n in sorted(np.load(f).files)]) if name.endswith(".npz") else Path.read_bytes
        assert read(folders[0] / name) == read(folders[1] / name), name


def test_counts_merged_from_runs_on_disk_equal_counting_at_once(ptb, tmp_path):
    """A long text is counted a chunk at a time, the chunks' runs spilled to disk and merged a
    block at a time: every table, the last N-gram and its suffixes come out as counted at once
    (small chunks and blocks here, so every order spans many of both)."""
    from engine.corpus import build_corpus
    from plugins.ngram import counts as C

    corpus = build_corpus([str(ptb / "ptb5k.train.txt")], pretokenized=True)
    ids, V = np.asarray(corpus.ids), len(corpus.vocab)
    whole = C.count_ngrams(ids, 5, V)
    old_block, C.MERGE_BLOCK = C.MERGE_BLOCK, 3000
    try:
        for fan_in in (64, 3):  # (3: more runs than a merge takes, merged in groups first, twice)
            C.FAN_IN = fan_in
            merged = C.count_ngrams(ids, 5, V, chunk=7001, spill=tmp_path)
            assert list(tmp_path.iterdir()) == []  # the runs are removed
            for a, b in zip(whole.orders, merged.orders):
                for field in ("keys", "counts", "suffix", "starts_bos"):
                    if getattr(a, field) is not None:
                        assert np.array_equal(getattr(a, field), getattr(b, field)), field
            assert merged.last == whole.last and merged.last_suffixes == whole.last_suffixes
    finally:
        C.MERGE_BLOCK, C.FAN_IN = old_block, 64


def test_repeated_sentences_are_counted_once_with_their_copies(ptb, tmp_path):
    """A text whose sentences repeat (shuffled copies, as the scale bench makes them; quoted mail)
    is counted from the first copy of each sentence of a window, weighted by its copies: every
    table comes out as counted at once, whether a window holds the whole text or a few blocks
    (then some windows repeat nothing and are counted as they are)."""
    from plugins.ngram import counts as C
    from plugins.ngram.copies import Copies, counting_jobs
    from plugins.ngram.scratch import Scratch

    corpus = build_corpus([str(ptb / "ptb5k.train.txt")], pretokenized=True)
    ids, V = np.asarray(corpus.ids), len(corpus.vocab)
    sentences = np.split(ids, np.flatnonzero(ids == BOS_ID)[1:])
    rng = np.random.default_rng(0)
    text = np.concatenate([sentences[i] for _ in range(3) for i in rng.permutation(len(sentences))])
    whole = C._count_chunk(text.astype(np.int64), 5, V)
    for budget, kinds in ((1 << 30, {Copies}), (256 << 10, {Copies, tuple})):
        jobs = counting_jobs(text, C._sentence_chunks(text, 7001), 7001, budget)
        assert {type(job) for job in jobs} == kinds
        (tmp_path / str(budget)).mkdir()
        counted = C.count_ngrams(text, 5, V, chunk=7001, scratch=Scratch(tmp_path / str(budget), budget))
        for a, b in zip(whole.orders, counted.orders):
            for field in ("keys", "counts", "suffix", "starts_bos"):
                assert np.array_equal(getattr(a, field), getattr(b, field)), field
        assert counted.last == whole.last and counted.last_suffixes == whole.last_suffixes


def test_cli_train_and_perplexity_give_kenlms_figure(ptb):
    from tests.conftest import run_cli
    import json

    run_cli("train", "--name", "ptb5k", "--order", "5", "--pretokenized", str(ptb / "ptb5k.train.txt"))
    out = json.loads(run_cli("perplexity", "-m", "ptb5k", "--json", "--pretokenized", str(ptb / "ptb500.valid.txt")).stdout)
    assert (out["tokens"], out["oov"], out["sentences"]) == (11371, 451, 500)
    assert out["perplexity"] == pytest.approx(REFERENCE_PPL[5][0], rel=1e-6)
    assert out["perplexity_excluding_oov"] == pytest.approx(REFERENCE_PPL[5][1], rel=1e-6)
