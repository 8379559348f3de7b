"""The fixed-window neural LM of Bengio et al. (2003): the previous n-1 words' embeddings
concatenated, a tanh hidden layer, a softmax over the vocabulary, and optionally the paper's
direct connections from the embeddings to the output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.model import option, sentence_starts
from engine.vocab import BOS_ID, EOS_ID
from plugins.neural.base import ROWS, NeuralModel
from plugins.neural.softmax import OutputLayer, log_softmax_without_bos
from plugins.neural.options import TrainOptions


@dataclass
class WindowOptions(TrainOptions):
    window: int = option(4, "previous words seen (n-1 of an n-gram)")
    embedding: int = option(100, "word embedding size")
    hidden: int = option(200, "hidden tanh units")
    direct: bool = option(False, "Bengio et al.'s direct embedding-to-output connections (softmax=full)")
    softmax: str = option("adaptive", "adaptive or full")
    batch_size: int = option(256, "windows a training step")
    optimizer: str = option("adam", "sgd or adam")
    lr: float = option(0.001, "learning rate")
    clip: float = option(1.0, "gradient-norm clipping")
    # Averaged over the last half: PTB test 144.95 in 20 minutes on one core, where the last
    # weights gave 147.43 on two (docs/benchmarks.md).
    average: float = option(0.5, "validate and keep the mean of the weights over this last share of the budget (Polyak averaging; 0: off)")

    def __post_init__(self):
        for name in ("window", "embedding", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.direct and self.softmax != "full":
            raise ValueError("direct connections need the full softmax (softmax=full)")
        self.check()


class WindowNet(nn.Module):
    """y = b + W x + U tanh(d + H x), x the concatenated context embeddings (Bengio et al. 2003)."""

    def __init__(self, vocab_size: int, o: WindowOptions):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, o.embedding)
        width = o.window * o.embedding
        self.hidden = nn.Linear(width, o.hidden)
        self.drop = nn.Dropout(o.dropout)
        self.out = OutputLayer(o.hidden, vocab_size, o.softmax)
        self.direct = nn.Linear(width, vocab_size, bias=False) if o.direct else None

    def forward(self, contexts: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities (B, V) or, given targets, their summed negative log-likelihood."""
        x = self.embed(contexts).flatten(1)  # (B, window * E)
        h = self.drop(torch.tanh(self.hidden(self.drop(x))))  # (B, H)
        if self.direct is None:
            return self.out.log_probs(h) if targets is None else self.out.nll(h, targets)
        logp = log_softmax_without_bos(self.out.linear(h) + self.direct(x))  # (B, V)
        return logp if targets is None else nn.functional.nll_loss(logp, targets, reduction="sum")


def contexts_of(ids: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, their previous ``window`` ids within the sentence, <s>-padded) for every
    scored position (not <s>)."""
    ids = np.asarray(ids, dtype=np.int64)
    positions = np.flatnonzero(ids != BOS_ID)
    depth = positions - sentence_starts(ids)[positions]  # 1 for the first word
    back = np.arange(window, 0, -1)  # oldest first
    source = positions[:, None] - back[None, :]
    inside = back[None, :] <= depth[:, None] - 1
    return positions, np.where(inside, ids[np.maximum(source, 0)], BOS_ID)


class WindowTask:
    def __init__(self, net: WindowNet, options: WindowOptions):
        self.net, self.options = net, options

    def reset(self, batch_size: int) -> None:
        pass

    def batches(self, ids, shuffle, rng, shard):
        rank, world = shard
        positions, contexts = contexts_of(ids, self.options.window)
        targets = np.asarray(ids, dtype=np.int64)[positions]
        order = rng.permutation(len(targets)) if shuffle else np.arange(len(targets))
        order = order[rank::world]
        for start in range(0, len(order), self.options.batch_size):
            pick = order[start : start + self.options.batch_size]
            yield torch.as_tensor(contexts[pick]), torch.as_tensor(targets[pick])

    def loss(self, net, batch):
        contexts, targets = batch
        device = next(net.parameters()).device
        return net(contexts.to(device), targets.to(device)), len(targets)


class WindowModel(NeuralModel):
    """Fixed-window feed-forward neural LM (Bengio et al. 2003)."""

    name = "window"
    Options = WindowOptions
    Net = WindowNet
    Task = WindowTask
    sentence_independent = True  # the window never reaches back past <s>
    adapt_batch_size = 16  # learning documents: windows a step


    def initial_state(self):
        return (BOS_ID,) * self.options.window

    def advance(self, state, token_id: int):
        if token_id == EOS_ID:
            return self.initial_state()
        return (state + (int(token_id),))[-self.options.window :]

    @torch.inference_mode()
    def next_logprobs(self, state) -> np.ndarray:
        return self.net(torch.tensor([state]))[0].numpy()

    @torch.inference_mode()
    def stream_logprobs(self, ids: np.ndarray):
        positions, contexts = contexts_of(ids, self.options.window)
        for start in range(0, len(positions), ROWS):
            rows = slice(start, start + ROWS)
            yield positions[rows], self.net(torch.as_tensor(contexts[rows]))
