"""A LanguageModel around a torch module: fitting through the shared loop, and storage as a
state dict beside the vocabulary (never a pickled object)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import torch

from engine.distribution import TIE_LN
from engine.files import regular_file
from engine.errors import ForetellError, ModelFormatError
from engine.model import LanguageModel
from plugins.neural import adapt, quantize
from plugins.neural.softmax import OutputLayer
from plugins.neural.training import split_validation, train

WEIGHTS = "weights.pt"
METRICS = "metrics.jsonl"
METRICS_BYTES = 16 << 20


ROWS = 128  # positions whose full float64 distribution is held at once (128 x 33k words: 34 MB)


def rows_stats(logp: torch.Tensor, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-probability, rank and entropy (bits) of ``targets`` from their rows of log-probabilities."""
    target = logp.gather(1, torch.as_tensor(targets)[:, None])
    rank = 1 + (logp > target + TIE_LN).sum(1).numpy()
    p_log_p = logp.exp().mul_(logp).nan_to_num_(nan=0.0)  # 0 * -inf is 0
    return target.squeeze(1).numpy(), rank, (-p_log_p.sum(1) / np.log(2)).numpy()


def _renamed_keys(state: dict) -> dict:
    """Models saved before the output layer had a choice of softmax named it ``out`` alone.
    (The state dict is changed in place: it carries module versions that loading relies on.)"""
    for old in ("out.weight", "out.bias"):
        if old in state:
            state["out.linear." + old[4:]] = state.pop(old)
    return state


class NeuralModel(LanguageModel):
    Net: ClassVar[type]  # the torch module, built from (vocabulary size, options)
    Task: ClassVar[type]  # how the shared training loop batches and scores it, from (net, options)
    adapt_batch_size: ClassVar[int] = 1  # learning documents: one stream at a time (documents are short)

    def __init__(self, vocab, options, net: torch.nn.Module, facts: dict | None = None, metrics: list | None = None):
        super().__init__(vocab, options)
        self.facts = facts or {}
        # Inference in float64 (one step at a time and a whole stream at once agree to ~1e-12),
        # or float32 with int8 weights for a quantized model.
        self.net = net.to("cpu").eval() if self.quantization else net.to("cpu").double().eval()
        self.metrics = metrics or []
        torch.set_num_threads(1)  # inference: one step per keystroke, one thread is fastest

    # -- backend hooks -----------------------------------------------------------------------
    @classmethod
    def build_net(cls, vocab_size: int, options) -> torch.nn.Module:
        return cls.Net(vocab_size, options)

    @classmethod
    def task(cls, net: torch.nn.Module, options):
        return cls.Task(net, options)

    # -- training and storage ----------------------------------------------------------------
    @classmethod
    def fit(cls, corpus, options, progress=None, workdir: Path | None = None):
        try:
            options.check()
        except ValueError as exc:
            raise ForetellError(str(exc)) from None
        torch.manual_seed(options.seed)
        net = cls.build_net(len(corpus.vocab), options)
        if options.valid:
            from engine.corpus import read_text
            from engine.scoring import encode
            from engine.tokenizer import tokenize

            train_ids = np.asarray(corpus.ids)
            valid_ids = encode(SimpleNamespace(vocab=corpus.vocab), tokenize(read_text(options.valid), corpus.pretokenized))
        else:
            train_ids, valid_ids = split_validation(corpus.ids)
        if isinstance(getattr(net, "out", None), OutputLayer):
            net.out.set_frequencies(np.bincount(np.asarray(train_ids), minlength=len(corpus.vocab)))
        state, metrics = train(cls.task(net, options), train_ids, valid_ids, options, progress, workdir)
        net.load_state_dict(state)
        parameters = sum(p.numel() for p in net.parameters())
        facts = {"parameters": parameters, "epochs_run": len(metrics)}
        if metrics:
            best = min(metrics, key=lambda m: m["valid_loss"])
            facts.update({"best_valid_perplexity": best["valid_perplexity"], "best_epoch": best["epoch"], "training_minutes": metrics[-1]["minutes"]})
        return cls(corpus.vocab, options, net, facts, metrics)

    def save(self, folder: Path) -> dict:
        state = self.net.state_dict()
        torch.save(quantize.pack(state) if self.quantization else state, folder / WEIGHTS)
        (folder / METRICS).write_text("".join(json.dumps(m) + "\n" for m in self.metrics))
        return self.facts

    @property
    def quantization(self) -> str | None:
        return self.facts.get("quantization")

    @property
    def score_tolerance(self) -> float:
        return 1e-4 if self.quantization else 1e-9  # float32 arithmetic when quantized

    def quantized(self) -> "NeuralModel":
        """A copy with int8 weights (``foretell models optimize``)."""
        if self.quantization:
            raise ForetellError("this model is quantized already")
        net = quantize.quantize(copy.deepcopy(self.net))
        return type(self)(self.vocab, self.options, net, {**self.facts, "quantization": quantize.SCHEME}, self.metrics)

    # -- learning the user's documents (engine.capabilities.Learnable) -----------------------
    def check_can_learn(self) -> None:
        if self.quantization:
            raise ForetellError("this model is a quantized copy; let the model it was made from learn, then optimize again")

    def with_documents(self, words: list[str], streams: list[np.ndarray]) -> "NeuralModel":
        """This model fine-tuned on ``streams`` (ids over the vocabulary extended by ``words``);
        see plugins.neural.adapt."""
        self.check_can_learn()
        return adapt.fine_tuned(self, words, streams)

    @classmethod
    def load(cls, folder: Path, vocab, options, facts: dict):
        extra = adapt.new_words(facts, len(vocab), folder.name)  # a learned copy: its base's network, grown
        net = cls.build_net(len(vocab) - extra, options)
        adapt.grow(net, extra)
        scheme = facts.get("quantization")
        if scheme not in (None, quantize.SCHEME):
            raise ModelFormatError(f"{folder.name}: unknown quantization {scheme!r}")
        try:
            state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
            net.load_state_dict(quantize.unpack(state) if scheme else _renamed_keys(state))
        except FileNotFoundError:
            raise ModelFormatError(f"{folder.name}: {WEIGHTS} is missing") from None
        except Exception as exc:  # torch raises many types for corrupt, foreign or pickled files
            raise ModelFormatError(f"{folder.name}: {WEIGHTS} is corrupt or not a state dict ({type(exc).__name__})") from None
        return cls(vocab, options, net, facts, _read_metrics(folder))

    # -- scoring: backends yield full log-probability rows, the rest derives here ------------
    def stream_logprobs(self, ids: np.ndarray):
        """Yield (positions, log-probabilities over the vocabulary at those positions), at most
        ROWS positions at a time."""
        raise NotImplementedError

    def score_ids(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.full(len(ids), np.nan)
        for positions, logp in self.stream_logprobs(ids):
            out[positions] = logp.gather(1, torch.as_tensor(ids[positions])[:, None]).squeeze(1).numpy()
        return out

    def token_stats(self, ids: np.ndarray):
        ids = np.asarray(ids, dtype=np.int64)
        out = np.full(len(ids), np.nan), np.zeros(len(ids), dtype=np.int64), np.full(len(ids), np.nan)
        for positions, logp in self.stream_logprobs(ids):
            for column, values in zip(out, rows_stats(logp, ids[positions])):
                column[positions] = values
        return out

    def expected(self, ids: np.ndarray, k: int):
        """The top ``k`` at every position from the distributions one pass computes."""
        ids = np.asarray(ids, dtype=np.int64)
        top_ids, top_logp = np.full((len(ids), k), -1, dtype=np.int64), np.full((len(ids), k), -np.inf)
        for positions, logp in self.stream_logprobs(ids):
            values, indices = torch.topk(logp, min(k, logp.shape[1]), dim=1)
            top_ids[positions, : indices.shape[1]], top_logp[positions, : values.shape[1]] = indices.numpy(), values.numpy()
        return top_ids, top_logp

    def describe(self) -> dict:
        info = {"architecture": str(self.net), **self.facts}
        if self.metrics:
            info["training_curve"] = [{k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()} for m in self.metrics]
        return info


def _read_metrics(folder: Path) -> list[dict]:
    """The training curve (one JSON object a line), refused whole if it is not one we wrote."""
    path = folder / METRICS
    if not path.exists():
        return []
    with open(regular_file(path, folder.name), "rb") as f:
        data = f.read(METRICS_BYTES + 1)
    try:
        if len(data) > METRICS_BYTES:
            raise ValueError
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        if not all(isinstance(row, dict) and all(isinstance(v, (int, float, str, type(None))) for v in row.values()) for row in rows):
            raise ValueError
    except (ValueError, RecursionError):
        raise ModelFormatError(f"{folder.name}: {METRICS} is corrupt") from None
    return rows
