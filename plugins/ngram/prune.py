"""Pruning a backoff model to a size: fewer n-grams, backoff weights renormalised.

Two ways to choose what goes. Count thresholds (as ``lmplz --prune``): an n-gram of order k
seen at most ``thresholds[k]`` times is dropped. Relative entropy (Stolcke 1998, "Entropy-based
pruning of backoff language models", as SRILM's ``-prune`` and OpenGrm's): each n-gram hw costs

    D(hw) = -P(h) [ p(w|h) (log p'(w|h) - log p(w|h)) + (log bo'(h) - log bo(h)) sum_{v backed off} p(v|h) ]

in Kullback-Leibler divergence from the full model when it alone is dropped (p' and bo' the
pruned model's probability and context backoff); the cheapest go first, down to a target
number of n-grams.

Either way an n-gram that begins (is the context of) or ends (is the lower-order estimate of)
a kept longer n-gram is kept, so every kept n-gram's context and backoff estimate exist, as
ARPA readers require, and each context's backoff weight is recomputed so that its distribution
sums to 1 again: bo(h) = (1 - sum_{hv kept} p(v|h)) / (1 - sum_{hv kept} p(v|h')).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from plugins.ngram.search import lookup

F32 = np.float32
LN10 = math.log(10.0)
TINY = 1e-12  # the smallest leftover mass a context's backoff is computed from


@dataclass
class Structure:
    """Per order k >= 2 (list index k - 1), the index in order k - 1 of each n-gram's context
    (its first k - 1 words) and of its lower-order estimate (its last k - 1 words)."""

    prefix: list[np.ndarray | None]
    suffix: list[np.ndarray | None]

    @classmethod
    def of(cls, keys: list[np.ndarray], V: int) -> "Structure":
        """One lookup per order: the lower estimate of hw is (the lower estimate of h, w)."""
        prefix, suffix = [None], [None]
        for k in range(2, len(keys) + 1):
            h = (keys[k - 1] // np.uint64(V)).astype(np.int64)
            w = (keys[k - 1] % np.uint64(V)).astype(np.int64)
            prefix.append(h)
            suffix.append(w if k == 2 else lookup(keys[k - 2], suffix[-1][h], w, V))
        return cls(prefix, suffix)


def relative_entropy(logp: list[np.ndarray], backoff: list[np.ndarray], s: Structure) -> list[np.ndarray | None]:
    """Stolcke's D(hw) in nats for every n-gram of order >= 2 (None for unigrams, never pruned),
    each measured against the full model. P(h) is the chain rule over h's own n-grams (<s> as
    certain, as SRILM takes it)."""
    log10_history = [logp[0].astype(np.float64)]
    for k in range(1, len(logp)):
        log10_history.append(log10_history[-1][s.prefix[k]] + logp[k])
    costs: list[np.ndarray | None] = [None]
    for k in range(1, len(logp)):
        h, n_ctx = s.prefix[k], len(logp[k - 1])
        p = 10.0 ** logp[k].astype(np.float64)  # p(w|h)
        q = 10.0 ** logp[k - 1][s.suffix[k]].astype(np.float64)  # p(w|h'), h'w explicit
        left = np.maximum(1.0 - np.bincount(h, p, n_ctx), TINY)[h]  # mass h backs off with
        lower_left = np.maximum(1.0 - np.bincount(h, q, n_ctx), TINY)[h]
        log_bo = backoff[k - 1][h].astype(np.float64) * LN10
        log_bo_new = np.log(left + p) - np.log(lower_left + q)
        change = p * (log_bo_new + np.log(q) - np.log(p)) + (log_bo_new - log_bo) * left
        costs.append(-(10.0 ** log10_history[k - 1][h]) * change)
    return costs


def kept(cheap: list[np.ndarray | None], s: Structure, unigrams: int) -> list[np.ndarray]:
    """Which n-grams stay when those marked ``cheap`` may go (every unigram stays): from the
    top order down, a cheap n-gram stays while a kept longer one begins or ends with it."""
    keep = [np.ones(unigrams, dtype=bool)] + [None] * (len(cheap) - 1)
    for k in range(len(cheap) - 1, 0, -1):
        keep[k] = ~cheap[k]
        if k + 1 < len(cheap):
            above = keep[k + 1]
            keep[k][s.prefix[k + 1][above]] = True
            keep[k][s.suffix[k + 1][above]] = True
    return keep


def by_counts(counts: list[np.ndarray], thresholds: list[int], s: Structure) -> list[np.ndarray]:
    """Keep masks for count thresholds, one per order from the second (the last repeats)."""
    cheap: list[np.ndarray | None] = [None]
    for k in range(1, len(counts)):
        cheap.append(counts[k] <= thresholds[min(k - 1, len(thresholds) - 1)])
    return kept(cheap, s, len(counts[0]))


def to_size(costs: list[np.ndarray | None], target: int, s: Structure, unigrams: int) -> tuple[list[np.ndarray], float | None]:
    """Keep masks for the largest threshold on D that leaves at least ``target`` n-grams (all
    orders, unigrams included), found by bisection; and that threshold (None: nothing goes)."""
    values = np.sort(np.concatenate(costs[1:]))

    def masks(threshold: float) -> list[np.ndarray]:
        return kept([None] + [c < threshold for c in costs[1:]], s, unigrams)

    def size(keep) -> int:
        return sum(int(m.sum()) for m in keep)

    lo, hi = 0, len(values)  # thresholds values[lo] .. : size(values[lo]) >= target
    if size(masks(values[0] if len(values) else 0.0)) < target:
        return masks(-np.inf), None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if size(masks(values[mid])) >= target:
            lo = mid
        else:
            hi = mid
    return masks(values[lo]), float(values[lo])


def apply(keys: list[np.ndarray], logp: list[np.ndarray], backoff: list[np.ndarray], V: int, keep: list[np.ndarray], s: Structure):
    """The kept n-grams' keys (re-indexed), probabilities and backoffs: renormalised for the
    contexts that lost a child, as they were (to the bit) for the others."""
    new_index = [np.cumsum(m) - 1 for m in keep]  # old index -> new (where kept)
    out_keys, out_logp = [keys[0].copy()], [logp[0].copy()]
    for k in range(1, len(keys)):
        m = keep[k]
        word = keys[k][m] % np.uint64(V)
        out_keys.append(new_index[k - 1][s.prefix[k][m]].astype(np.uint64) * np.uint64(V) + word)
        out_logp.append(logp[k][m].copy())
    out_backoff = []
    for k in range(len(keys) - 1):  # contexts of order k + 1, children at order k + 2
        m = keep[k + 1]
        h, n_ctx = s.prefix[k + 1][m], len(keys[k])
        explicit = np.bincount(h, 10.0 ** logp[k + 1][m].astype(np.float64), n_ctx)
        lower = np.bincount(h, 10.0 ** logp[k][s.suffix[k + 1][m]].astype(np.float64), n_ctx)
        log10_bo = np.log10(np.maximum(1.0 - explicit, TINY)) - np.log10(np.maximum(1.0 - lower, TINY))
        lost = np.bincount(s.prefix[k + 1][~m], minlength=n_ctx) > 0
        bo = np.where(lost, log10_bo.astype(F32), backoff[k])
        out_backoff.append(bo[keep[k]])
    out_backoff.append(np.zeros(len(out_keys[-1]), dtype=F32))
    return out_keys, out_logp, out_backoff
