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

from engine.distribution import TIE_LN
from engine.vocab import BOS_ID

KINDS = ("full", "adaptive")
CUTOFFS = (2000, 6000)  # word ranks where the adaptive softmax's clusters start
DIV_VALUE = 4.0  # each cluster's projection is this many times narrower than the last
ANALYSIS_ROWS = 32  # positions per ``target_stats`` call in document analysis: a block stays in cache


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

    @torch.inference_mode()
    def target_stats(self, h: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probability (nats), rank and entropy (nats) of each target id given ``h`` (B, H),
        as ``log_probs`` would give them, computed from the logits a block at a time (the
        adaptive softmax's head words, then each cluster): one exp per word and position, and
        no (B, V) distribution built or put back in vocabulary order."""
        if self.kind == "full":
            logits, shortlist, tails, where, bos = self.linear(h), None, [], targets, BOS_ID
        else:
            a = self.adaptive
            logits, shortlist, tails, where, bos = a.head(h), a.shortlist_size, a.tail, self.rank[targets], int(self.rank[BOS_ID])
        head = _Block(logits)
        blocks = [head.words(shortlist)]
        for i, tail in enumerate(tails):  # log p(w) = log p(cluster) + log p(w | cluster)
            blocks.append(_Block(tail(h), head.logp(slice(None), shortlist + i)))
        target = torch.empty(len(targets), dtype=h.dtype)
        at = 0
        for block in blocks:
            inside = (where >= at) & (where < at + block.size)
            target[inside] = block.logp(inside, where[inside] - at)
            at += block.size
        # Words closer to the target than float32 resolves (relative 1e-6) count as tied.
        threshold = target + torch.clamp(target.abs() * 1e-6, min=TIE_LN)
        above = torch.zeros(len(targets), dtype=h.dtype)
        plogp = torch.zeros(len(targets), dtype=h.dtype)
        at = 0
        for block in blocks:
            above += block.count_above(threshold)
            plogp += block.sum_p_logp()
            if at <= bos < at + block.size:
                bos_logp = block.logp(slice(None), bos - at)
            at += block.size
        # <s> is never predicted: take its share out and renormalise (as log_probs does).
        p_bos = bos_logp.exp()
        above -= (bos_logp > threshold).to(h.dtype)
        log_rest = torch.log1p(-p_bos)
        entropy = (p_bos * bos_logp - plogp) / (1 - p_bos) + log_rest
        return target - log_rest, above.long() + 1, entropy

    def nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood of ``targets`` (-100: not scored) given ``h``."""
        h, targets = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
        if self.kind == "full":
            return nn.functional.nll_loss(self.log_probs(h), targets, ignore_index=-100, reduction="sum")
        keep = targets != -100
        # The training loss leaves <s>'s small share of the mass in place; inference renormalises.
        return -self.adaptive(h[keep], self.rank[targets[keep]]).output.sum()


class TiedEmbedding(nn.Module):
    """Input embeddings read from an adaptive ``OutputLayer``'s own weights (Baevski and Auli
    2019, "Adaptive Input Representations", tied input and output with tied projections): a head
    word's vector is its row of the head; a rarer word's is its row of its cluster's output
    matrix taken back through the cluster's projection. Every output update moves the input
    vectors too (Press and Wolf 2017), and the rare words' vectors cost their cluster's width.

    The output layer is referenced, not held as a submodule: its weights are saved, converted
    and quantized once, under ``out``."""

    def __init__(self, out: OutputLayer):
        super().__init__()
        if out.kind != "adaptive":
            raise ValueError("TiedEmbedding reads an adaptive output layer")
        object.__setattr__(self, "out", out)

    def extra_repr(self) -> str:
        return "tied to the output layer's weights"

    @property
    def weight(self) -> torch.Tensor:
        """The head's weights (what callers read a dtype and a width from)."""
        return self.out.adaptive.head.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        a = self.out.adaptive
        ranks = self.out.rank[idx.reshape(-1)]
        vectors = a.head.weight.new_empty(len(ranks), a.in_features)
        starts = [0, *a.cutoffs]
        for i, (low, high) in enumerate(zip(starts, starts[1:])):
            at = torch.nonzero((ranks >= low) & (ranks < high)).squeeze(1)
            if len(at) == 0:
                continue
            rows = ranks[at] - low
            if i == 0:
                vectors = vectors.index_copy(0, at, a.head.weight[rows])
            else:
                project, words = a.tail[i - 1]
                vectors = vectors.index_copy(0, at, words.weight[rows] @ project.weight)  # (n, d) @ (d, H)
        return vectors.reshape(*idx.shape, a.in_features)


class _Block:
    """Logits ``z`` of some words whose log-probabilities are ``z - logsumexp(z) + base`` (per
    row), with exp(z - max) computed once."""

    def __init__(self, z: torch.Tensor, base: torch.Tensor | None = None):
        self.z, self.size = z, z.shape[1]
        self.max = z.amax(1, keepdim=True)
        self.exp = z.sub(self.max).exp_()
        self.total = self.exp.sum(1, keepdim=True)
        self.offset = (base[:, None] if base is not None else 0) - self.max - self.total.log()  # log p = z + offset

    def words(self, count: int | None) -> "_Block":
        """The first ``count`` entries as a block of their own (the head's words; its cluster
        entries are not words), normalised over the whole head."""
        if count is None or count == self.size:
            return self
        part = object.__new__(_Block)
        part.z, part.size, part.max, part.exp, part.offset = self.z[:, :count], count, self.max, self.exp[:, :count], self.offset
        part.total = part.exp.sum(1, keepdim=True)
        return part

    def logp(self, rows, columns) -> torch.Tensor:
        return self.z[rows, columns] + self.offset[rows, 0]

    def count_above(self, threshold: torch.Tensor) -> torch.Tensor:
        """Per row, how many words' log-probability exceeds ``threshold`` (as floats: fast)."""
        return self.z.sub((threshold[:, None] - self.offset)).gt_(0).sum(1)

    def sum_p_logp(self) -> torch.Tensor:
        """Per row, the sum over these words of p log p."""
        scale = (self.max + self.offset).squeeze(1)  # p = exp * exp(max + offset)
        return scale.exp() * (torch.linalg.vecdot(self.exp, self.z) + self.offset[:, 0] * self.total[:, 0])
