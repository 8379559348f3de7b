"""What only the neural backends have: checkpoints and resume, validation files, distributed
training under torchrun, safe weight loading, and the language server over a recurrent model."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from engine.corpus import corpus_from_text
from engine.errors import ForetellError, ModelFormatError
from engine.model import options_from_strings
from engine.plugins import get_backend
from engine.scoring import encode
from engine.store import ModelStore
from engine.tokenizer import tokenize
from engine.vocab import BOS_ID
from tests.conftest import SMALL_TEXT, run_cli

TINY = {"hidden": "16", "embedding": "16", "layers": "1"}


def rnn(**options):
    cls = get_backend("rnn").cls
    return cls, options_from_strings(cls.Options, {**TINY, **options})


def test_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    cls, options = rnn(epochs="4", patience="10")
    corpus = corpus_from_text(SMALL_TEXT * 5)
    calls = []

    def interrupt_in_epoch_three(message, fraction):
        calls.append(message)
        if message.startswith("epoch 2: valid"):
            raise KeyboardInterrupt

    with pytest.raises(ForetellError, match="interrupted.*resume=true"):
        cls.fit(corpus, options, progress=interrupt_in_epoch_three, workdir=tmp_path)
    assert (tmp_path / "checkpoint.pt").exists()
    _, resumed_options = rnn(epochs="4", patience="10", resume="true")
    model = cls.fit(corpus, resumed_options, workdir=tmp_path)
    assert [m["epoch"] for m in model.metrics] == [1, 2, 3, 4]
    assert not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(ForetellError, match="nothing to resume"):
        cls.fit(corpus, resumed_options, workdir=tmp_path)


def test_linear_schedule_decays_the_learning_rate_to_zero_over_the_budget():
    cls, options = rnn(epochs="3", patience="10", schedule="linear", lr="1", anneal_below="0", batch_size="2", bptt="5")
    rates = [m["lr"] for m in cls.fit(corpus_from_text(SMALL_TEXT * 3), options).metrics]
    assert 0.55 < rates[0] < 0.7 and 0.25 < rates[1] < 0.35 and rates[2] < 0.05


def test_averaging_keeps_the_mean_of_the_weights_of_the_last_share_of_training():
    import torch

    from plugins.neural.training import RunningMean

    net, mean = torch.nn.Linear(2, 1), RunningMean()
    with mean.in_place(net):  # nothing averaged yet: the weights as they are
        assert net.weight.detach().clone().tolist() == net.weight.tolist()
    for value in (1.0, 2.0, 6.0):
        torch.nn.init.constant_(net.weight, value)
        mean.add(net)
    with mean.in_place(net):
        assert net.weight.tolist() == [[3.0, 3.0]]
    assert net.weight.tolist() == [[6.0, 6.0]]  # training goes on from its own weights
    # In training, validation scores the mean, and the model kept is the mean that scored best.
    corpus = corpus_from_text(SMALL_TEXT * 3)
    cls, options = rnn(epochs="6", patience="10", average="0.5", anneal_below="0")
    model = cls.fit(corpus, options, progress=lambda message, fraction: None)
    cls, plain = rnn(epochs="6", patience="10", anneal_below="0", average="0")
    averaged, last = [m["valid_loss"] for m in model.metrics], [m["valid_loss"] for m in cls.fit(corpus, plain).metrics]
    assert averaged[:3] == last[:3] and averaged[5] != last[5]  # (averaging starts halfway)
    cls, default = rnn(epochs="6", patience="10", anneal_below="0")
    assert [m["valid_loss"] for m in cls.fit(corpus, default).metrics] == averaged  # the Elman's default
    # Once averaging, the rate is no longer annealed (here it would be at every epoch's end).
    cls, options = rnn(epochs="6", patience="10", average="0.5", anneal_below="100", schedule="plateau", lr="1")
    assert [m["lr"] for m in cls.fit(corpus, options).metrics] == [1, 1, 0.25, 0.0625, 0.0625, 0.0625]
    with pytest.raises(ForetellError, match="average must be"):
        cls.fit(corpus, rnn(average="2")[1])


def test_a_tied_elman_reads_its_input_vectors_from_the_output_layer_and_learns_both_at_once():
    import torch

    from plugins.rnn.model import RNNNet

    cls, options = rnn()
    assert options.tied and not rnn(cell="lstm")[1].tied  # the Elman's default; the gated cells stay untied
    assert not rnn(embedding="8")[1].tied  # a default the sizes rule out is dropped, not an error
    only_hidden = options_from_strings(cls.Options, {"hidden": "12"})
    assert (only_hidden.embedding, only_hidden.tied) == (12, True)  # the embedding follows a tied hidden size
    assert options_from_strings(cls.Options, {"cell": "gru", "hidden": "12"}).embedding == 200  # untied: the cell's
    with pytest.raises(ForetellError, match="embedding == hidden"):
        rnn(embedding="8", tied="true")
    net = RNNNet(40, options)
    net.out.set_frequencies(np.arange(40)[::-1])  # id 0 the most frequent ... 39 the least
    a = net.out.adaptive
    head_word, rare_word = 2, 38  # ranks 0..39 in the adaptive softmax's order (<s> goes last)
    head_row, rare_row = int(net.out.rank[head_word]), int(net.out.rank[rare_word]) - a.cutoffs[-2]
    project, words = a.tail[-1]  # the rarest cluster
    vectors = net.embed(torch.tensor([[head_word, rare_word]]))  # (1, 2, 16)
    assert head_row < a.shortlist_size and torch.equal(vectors[0, 0], a.head.weight[head_row])
    assert torch.allclose(vectors[0, 1], words.weight[rare_row] @ project.weight)
    assert not any(name.startswith("embed.") for name in net.state_dict())  # saved once, under out
    vectors.sum().backward()  # a gradient through the input reaches the output layer's weights
    assert a.head.weight.grad[head_row].abs().sum() > 0 and words.weight.grad[rare_row].abs().sum() > 0


def test_a_time_budget_given_alone_is_the_budget_used():
    """`-O max_minutes=M` without `epochs` trains until the minutes are spent (not ten epochs
    and stop), with the linear schedule decayed over those minutes; without either, ten epochs."""
    corpus = corpus_from_text(SMALL_TEXT * 2)
    cls, options = rnn(max_minutes="0.05", patience="1000000", anneal_below="0", schedule="linear", lr="1")
    metrics = cls.fit(corpus, options).metrics
    assert len(metrics) > 10 and 0.04 < metrics[-1]["minutes"] < 0.08
    assert metrics[-1]["lr"] < 0.2 < metrics[0]["lr"]  # decayed over the minutes, not over ten epochs
    cls, options = rnn(patience="1000")
    assert len(cls.fit(corpus, options).metrics) == 10


def test_validation_file_and_training_curve_in_models_info(tmp_path):
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    train.write_text(SMALL_TEXT * 3)
    valid.write_text("The cat sat on the log. The dog sat on the mat.\n")
    run_cli("train", "--backend", "rnn", "--name", "r", "-O", "hidden=16", "-O", "embedding=16", "-O", "epochs=2", "-O", f"valid={valid}", str(train))
    info = json.loads(run_cli("models", "info", "r", "--json").stdout)
    details = info["details"]
    assert "RNN(16, 16" in details["architecture"] and details["parameters"] > 0
    assert [row["epoch"] for row in details["training_curve"]] == [1, 2]
    assert {"train_loss", "valid_perplexity", "lr", "grad_norm_mean", "clipped_share", "tokens_per_s"} <= set(details["training_curve"][0])
    out = json.loads(run_cli("predict", "-m", "r", "--json", "The cat sat on the ").stdout)
    assert len(out["predictions"]) == 10


class Exploit:
    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weights_replaced_by_a_pickle_are_refused_and_never_run(tmp_path):
    cls, options = rnn(epochs="1")
    model = cls.fit(corpus_from_text(SMALL_TEXT), options)
    store = ModelStore()
    store.save("r", model)
    Exploit.marker = str(tmp_path / "pwned")
    with open(store.path("r") / "weights.pt", "wb") as f:
        pickle.dump({"embed.weight": Exploit()}, f)
    with pytest.raises(ModelFormatError, match="weights.pt is corrupt or not a state dict"):
        store.load("r")
    assert not (tmp_path / "pwned").exists()


def test_distributed_training_with_two_processes(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(SMALL_TEXT * 10)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "engine",
         "train", "--backend", "rnn", "--name", "ddp", "-O", "hidden=16", "-O", "embedding=16", "-O", "epochs=2", str(corpus)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Trained 'ddp'") == 1  # one rank writes the model
    model = ModelStore().load("ddp")
    scores = model.score_ids(encode(model, tokenize("The cat sat on the mat.")))
    assert np.isfinite(scores[1:]).all()


def test_language_server_over_a_recurrent_model():
    """Edits re-score from the changed paragraph on, and give what a fresh analysis gives."""
    from engine.analysis import DocumentAnalysis

    cls, options = rnn(epochs="1")
    model = cls.fit(corpus_from_text(SMALL_TEXT * 3), options)
    text = "The cat sat on the mat.\n\nThe dog ran.\n\nA fox met the dog.\n"
    first = DocumentAnalysis(model, text)
    edited = text.replace("dog ran", "dog sat")
    incremental = DocumentAnalysis(model, edited, first)
    fresh = DocumentAnalysis(model, edited)
    assert np.allclose(incremental.logprob, fresh.logprob, atol=1e-5)
    assert np.array_equal(incremental.rank, fresh.rank)
    # Analysis runs in float32; the document's scores agree with float64 scoring.
    ids = encode(model, tokenize(edited))
    assert np.allclose(fresh.logprob, model.score_ids(ids)[ids != BOS_ID], atol=1e-4)


def test_optimize_saves_an_int8_copy_and_refuses_a_bad_one(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import plugins.neural.quantize as quantize
    from engine.cli import cli

    held = tmp_path / "held.txt"
    held.write_text("The cat sat on the warm mat. A dog ran over the log.\n")
    cls, options = rnn(epochs="2", cell="lstm")
    store = ModelStore()
    store.save("r", cls.fit(corpus_from_text(SMALL_TEXT * 3), options))
    weights = (store.path("r") / "weights.pt").read_bytes()

    out = CliRunner().invoke(cli, ["models", "optimize", "r", "--check", str(held)])
    assert out.exit_code == 0, out.output
    assert "before" in out.output and "Saved 'r-int8'" in out.output
    copy = store.load("r-int8")
    assert copy.quantization == "int8-weights"
    assert (store.path("r-int8") / "weights.pt").stat().st_size < len(weights) / 2
    ids = encode(copy, tokenize(held.read_text()))
    assert np.allclose(copy.score_ids(ids), store.load("r").score_ids(ids), atol=0.05, equal_nan=True)
    assert (store.path("r") / "weights.pt").read_bytes() == weights  # the original is untouched

    def ruined(net):  # a "quantization" that loses everything: the check must refuse it
        for p in net.parameters():
            p.data.zero_()
        return net.float()

    monkeypatch.setattr(quantize, "quantize", ruined)
    out = CliRunner().invoke(cli, ["models", "optimize", "r", "--name", "worse", "--check", str(held)])
    assert out.exit_code == 1 and "nothing saved" in out.output
    assert not store.exists("worse")
    cache = get_backend("cache").cls
    store.save("c", cache.fit(corpus_from_text(SMALL_TEXT), cache.Options()))
    out = CliRunner().invoke(cli, ["models", "optimize", "c"])
    assert out.exit_code == 1 and "has no quantized form" in out.output
