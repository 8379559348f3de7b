"""The output layer of the neural backends: hidden vectors to a distribution over the vocabulary.

The softmax over every word costs hidden x vocabulary multiply-adds per token: with 200 hidden
units and PTB's 10,002 words that is most of a small model's training time. ``adaptive`` is
Grave et al. (2017)'s adaptive softmax: the most frequent words and one entry per cluster of
rarer words form a small head; each rarer cluster sits behind a smaller projection and is paid
for only when a target falls in it. Its full distribution is still exact and normalised (head
log-probability plus the cluster's), so scoring, ranks and completion work unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from engine.vocab import BOS_ID

KINDS = ("full", "adaptive")
CUTOFFS = (2000, 6000)  # word ranks where the adaptive softmax's clusters start
DIV_VALUE = 4.0  # each cluster's projection is this many times narrower than the last


def log_softmax_without_bos(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the vocabulary; <s> is context only, never predicted.

    ``logits`` is overwritten: callers pass the fresh output of a layer (no copy of a
    batch x vocabulary block per step; autograd allows it, no layer keeps its output)."""
    logits[..., BOS_ID] = -torch.inf
    return torch.log_softmax(logits, dim=-1)


class OutputLayer(nn.Module):
    """``full`` (one Linear, softmax over every word) or ``adaptive`` (Grave et al. 2017)."""

    def __init__(self, hidden: int, vocab_size: int, kind: str = "full"):
        super().__init__()
        self.kind = kind
        if kind == "full":
            self.linear = nn.Linear(hidden, vocab_size)
            return
        cutoffs = [c for c in CUTOFFS if c < vocab_size - 1] or sorted({max(1, vocab_size // 4), max(1, vocab_size // 2)})
        div = max(1.0, min(DIV_VALUE, 0.999 * hidden ** (1 / len(cutoffs))))  # every cluster keeps >= 1 dimension
        self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab_size, cutoffs, div_value=div)
        # Vocabulary id -> its rank by training frequency (the adaptive softmax's class order).
        self.register_buffer("rank", torch.arange(vocab_size))

    def set_frequencies(self, counts: np.ndarray) -> None:
        """Order words by how often they are predicted in training (<s> never is: last)."""
        if self.kind != "adaptive":
            return
        counts = np.asarray(counts, dtype=np.float64).copy()
        counts[BOS_ID] = -1
        order = np.argsort(-counts, kind="stable")  # rank -> id
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        self.rank.copy_(torch.as_tensor(rank))

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., V) normalised log-probabilities, <s> excluded."""
        if self.kind == "full":
            return log_softmax_without_bos(self.linear(h))
        flat = self.adaptive.log_prob(h.reshape(-1, h.shape[-1]))[:, self.rank]  # back to vocabulary ids
        return log_softmax_without_bos(flat).reshape(*h.shape[:-1], -1)

    def nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood of ``targets`` (-100: not scored) given ``h``."""
        h, targets = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
        if self.kind == "full":
            return nn.functional.nll_loss(self.log_probs(h), targets, ignore_index=-100, reduction="sum")
        keep = targets != -100
        # The training loss leaves <s>'s small share of the mass in place; inference renormalises.
        return -self.adaptive(h[keep], self.rank[targets[keep]]).output.sum()
