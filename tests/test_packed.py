"""The packed n-gram layout (plugins.ngram.packed): exact, memory-mapped, and folders saved in
the earlier layout keep loading; its 8-bit copy stays close and says what it cannot do."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.errors import ForetellError, ModelFormatError
from engine.mapped import map_array
from engine.memory import mapping_of
from engine.plugins import get_backend
from engine.scoring import encode, perplexity
from engine.store import ModelStore
from engine.tokenizer import tokenize
from plugins.ngram.packed import CodedValues, PackedKeys
from tests.conftest import SMALL_TEXT

HELD_OUT = "The cat sat on the log. A fox and a dog ran over the warm mat. Cats sleep."


@pytest.fixture
def saved(small_corpus):
    cls = get_backend("ngram").cls
    model = cls.fit(small_corpus, cls.Options(order=3))
    store = ModelStore()
    store.save("kn", model)
    return store, model


@pytest.mark.parametrize("array", [np.arange(7, dtype=np.uint32), np.linspace(0, 1, 5, dtype=np.float32), np.arange(6, dtype=">i8").reshape(2, 3),
                                   np.arange(6, dtype=np.int32).reshape(3, 2).T, np.array([], dtype=np.int64), np.array(3.5), np.array([True, False])])
def test_arrays_are_mapped_as_numpy_maps_them(tmp_path, array):
    path = tmp_path / "a.npy"
    np.save(path, array)
    ours, numpys = map_array(path), np.load(path, mmap_mode="r")
    assert ours.dtype == numpys.dtype and ours.shape == numpys.shape and np.array_equal(ours, numpys)
    assert not ours.flags.writeable and (mapping_of(ours) or ours.size == 0)
    if array.size:  # a short file: numpy's own error
        path.write_bytes(path.read_bytes()[:-1])
        with pytest.raises(ValueError, match="mmap length"):
            map_array(path)


def scores(model, text=HELD_OUT):
    return model.score_ids(encode(model, tokenize(text)))


def test_the_packed_folder_scores_exactly_as_the_model_trained_and_maps_its_files(saved):
    store, model = saved
    loaded = store.load("kn")
    assert isinstance(loaded.keys[2], PackedKeys) and isinstance(loaded.backoff[1], CodedValues)
    assert mapping_of(loaded.keys[2].low) and mapping_of(loaded.logp[2])
    assert np.array_equal(scores(loaded), scores(model), equal_nan=True)
    for k in range(model.order):
        assert np.array_equal(np.asarray(loaded.keys[k]), model.keys[k])
        assert np.array_equal(np.asarray(loaded.logp[k]), model.logp[k])
    assert len(np.searchsorted(loaded.keys[2], np.zeros(0, dtype=np.uint64))) == 0
    assert np.array_equal(loaded.token_stats(encode(loaded, tokenize("Zebra."))), model.token_stats(encode(model, tokenize("Zebra."))), equal_nan=True)
    state = loaded.advance(loaded.initial_state(), loaded.vocab.id("The"))
    assert np.array_equal(loaded.next_logprobs(state), model.next_logprobs(model.advance(model.initial_state(), model.vocab.id("The"))))


def test_a_folder_in_the_earlier_layout_still_loads(saved):
    store, model = saved
    folder = store.path("kn")
    for path in folder.glob("*.npy"):
        path.unlink()
    (folder / "counts.npz").unlink()
    for k in range(model.order):  # how models were saved before the packed layout
        np.save(folder / f"keys{k + 1}.npy", np.asarray(model.keys[k]), allow_pickle=False)
        np.save(folder / f"logp{k + 1}.npy", model.logp[k], allow_pickle=False)
        np.save(folder / f"backoff{k + 1}.npy", model.backoff[k], allow_pickle=False)
        np.save(folder / f"counts{k + 1}.npy", model.counts[k].astype(np.uint32), allow_pickle=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["backend_format_version"] == 2  # an older foretell says to upgrade rather than miss keys1.npy
    (folder / "manifest.json").write_text(json.dumps({**manifest, "backend_format_version": 1}))
    old = store.load("kn")
    assert not isinstance(old.keys[1], PackedKeys)
    assert np.array_equal(scores(old), scores(model), equal_nan=True)
    learned = old.with_documents([], [encode(old, tokenize("The cat sat on the mat."))])
    assert learned.counts[0].sum() > model.counts[0].sum()


def test_learning_reads_the_deflated_counts_only_when_it_needs_them(saved):
    store, model = saved
    loaded = store.load("kn")
    assert loaded.counts._counts is None  # scoring never read them
    scores(loaded)
    assert loaded.counts._counts is None
    ids = encode(loaded, tokenize("The cat sat on the mat."))
    again = model.with_documents([], [ids])
    assert np.array_equal(scores(loaded.with_documents([], [ids])), scores(again), equal_nan=True)


def test_codes_past_their_table_and_unsorted_keys_are_refused(saved):
    store, _ = saved
    folder = store.path("kn")
    codes = np.load(folder / "backoff2.codes.npy")
    np.save(folder / "backoff2.codes.npy", np.full_like(codes, np.iinfo(codes.dtype).max))
    with pytest.raises(ModelFormatError, match="past its table"):
        store.load("kn")
    np.save(folder / "backoff2.codes.npy", codes)
    low = np.load(folder / "keys3.low.npy")
    np.save(folder / "keys3.low.npy", low[::-1].copy())
    with pytest.raises(ModelFormatError, match="not sorted"):
        store.load("kn")


def test_every_key_is_checked_once_per_version_of_the_files(saved, monkeypatch):
    """Loading maps the files: the check that reads every key and code runs on the first load of
    the files as they are, not at every start; a file written since is checked again."""
    store, _ = saved
    checked = []
    real = PackedKeys.problem
    monkeypatch.setattr(PackedKeys, "problem", lambda self: checked.append(len(self)) or real(self))
    first = scores(store.load("kn"))
    assert len(checked) == 2  # orders 2 and 3
    assert np.array_equal(scores(store.load("kn")), first, equal_nan=True) and len(checked) == 2
    folder = store.path("kn")
    low = np.load(folder / "keys3.low.npy")
    np.save(folder / "keys3.low.npy", low[::-1].copy())  # the same size, written after the check
    with pytest.raises(ModelFormatError, match="not sorted"):
        store.load("kn")
    np.save(folder / "keys3.low.npy", low)
    assert np.array_equal(scores(store.load("kn")), first, equal_nan=True) and len(checked) == 6
    records = list((store.root / "checked").iterdir())
    assert len(records) == 1
    store.remove("kn")  # and its record goes with it
    assert not records[0].exists()


def test_the_8_bit_copy_stays_close_saves_and_refuses_to_learn(saved):
    store, model = saved
    small = model.quantized()
    sentences = tokenize(SMALL_TEXT + HELD_OUT)
    before, after = perplexity(model, sentences).perplexity, perplexity(small, sentences).perplexity
    assert abs(after / before - 1) < 0.02
    store.save("kn-8bit", small)
    loaded = store.load("kn-8bit")
    assert np.array_equal(scores(loaded), scores(small), equal_nan=True)
    assert isinstance(loaded.logp[2], CodedValues) and loaded.logp[2].codes.dtype == np.uint8
    with pytest.raises(ForetellError, match="quantized copy"):
        loaded.check_can_learn()
    with pytest.raises(ForetellError, match="quantized already"):
        loaded.quantized()


def test_models_optimize_makes_the_8_bit_copy_of_an_ngram_model(saved, tmp_path):
    store, _ = saved
    held = tmp_path / "held.txt"
    held.write_text(SMALL_TEXT)
    result = CliRunner().invoke(cli, ["models", "optimize", "kn", "--check", str(held), "--tolerance", "5"])
    assert result.exit_code == 0, result.output
    assert "kn-int8" in result.output and "perplexity on" in result.output
    info = json.loads(CliRunner().invoke(cli, ["models", "info", "kn-int8", "--json"]).output)
    assert "quantization" in json.dumps(info)


def test_counts_that_claim_another_size_are_refused_before_they_are_read(saved):
    import io
    import zipfile

    store, _ = saved
    folder = store.path("kn")
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<u4", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(folder / "counts.npz", "w") as archive:
        archive.writestr("counts1.npy", buffer.getvalue())
    loaded = store.load("kn")  # the counts are read only to learn
    with pytest.raises(ModelFormatError, match="do not match its n-grams"):
        loaded.with_documents([], [encode(loaded, tokenize("The cat."))])


def test_export_and_pruning_of_a_loaded_packed_model_equal_those_of_the_model_trained(saved, tmp_path):
    store, model = saved
    loaded = store.load("kn")
    model.export_arpa(tmp_path / "trained.arpa")
    loaded.export_arpa(tmp_path / "loaded.arpa")
    assert (tmp_path / "loaded.arpa").read_bytes() == (tmp_path / "trained.arpa").read_bytes()
    for small, big in ((loaded.pruned(ngrams=40), model.pruned(ngrams=40)), (loaded.pruned(min_counts=[0, 1]), model.pruned(min_counts=[0, 1]))):
        assert np.array_equal(scores(small), scores(big), equal_nan=True)
    quantized = loaded.quantized()
    assert np.array_equal(scores(quantized), scores(model.quantized()), equal_nan=True)


@pytest.mark.parametrize("seed", range(6))
def test_packed_keys_find_what_the_full_keys_find_across_blocks(seed):
    """A large model's keys pass 2^32, so their packed form has several blocks (the small models
    of these tests have one): every lookup, in any order or clustered, finds what the full keys
    find, including keys absent at a block's end and past the last block."""
    from plugins.ngram.search import lookup

    rng = np.random.default_rng(seed)
    V = (1 << 31) + 7
    keys = np.unique(rng.integers(0, 5 << 32, 3000, dtype=np.uint64))
    packed = PackedKeys.of(keys)
    assert len(packed.blocks) > 3
    present = keys[rng.integers(0, len(keys), 400)]
    absent = np.concatenate([rng.integers(0, 6 << 32, 400, dtype=np.uint64), keys[np.minimum(packed.blocks[1:-1], len(keys) - 1)] + np.uint64(1)])
    needles = np.concatenate([present, absent])
    context, words = (needles // np.uint64(V)).astype(np.int64), (needles % np.uint64(V)).astype(np.int64)
    context[:5] = -1
    want = lookup(keys, context, words, V)
    assert (want >= 0).sum() >= 395 and np.array_equal(lookup(packed, context, words, V), want)
    order = np.argsort(needles)
    assert np.array_equal(lookup(packed, context[order], words[order], V, clustered=True), want[order])
    # A needle past its block's last key whose low bits are the next block's first: absent.
    small = PackedKeys.of(np.array([5, 9, (1 << 32) | 100, (2 << 32) | 3], dtype=np.uint64))
    assert lookup(small, np.array([0, 0, 1, 7]), np.array([100, 9, 3, 3]), 1 << 32).tolist() == [-1, 1, -1, -1]
