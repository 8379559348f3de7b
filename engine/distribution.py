"""Facts about one next-token distribution: the rank of a token and the entropy."""

from __future__ import annotations

import math

import numpy as np

TIE = 1e-9  # log10 units: values closer than this count as tied (not ranked above)
TIE_LN = TIE * math.log(10)  # the same in natural-log units
LOG2E = 1 / math.log(2)


RANK_BUCKET_LIMITS = np.array([10, 100, 1000])  # GLTR's buckets: top 10, top 100, top 1000, beyond


def rank_buckets(ranks):
    """0-3: the GLTR bucket of each rank (top 10, 100, 1000, beyond); an int for an int."""
    return np.searchsorted(RANK_BUCKET_LIMITS, ranks, side="left")


def rank_and_entropy(dist: np.ndarray, token_id: int) -> tuple[int, float]:
    """Rank of ``token_id`` in ``dist`` (natural logs; 1 = most probable) and entropy in bits."""
    rank = 1 + int(np.count_nonzero(dist > dist[token_id] + TIE_LN))
    finite = dist[np.isfinite(dist)]
    p = np.exp(finite)
    return rank, float(-(p * finite).sum() * LOG2E)


def top_k(scores: np.ndarray, k: int, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest finite ``scores`` and their ids (``ids[i]`` names ``scores[i]``; the
    positions by default), highest first, ties in id order."""
    ids = np.arange(len(scores)) if ids is None else ids
    if len(ids) > k:
        best = np.argpartition(-scores, k - 1)[:k]
        ids, scores = ids[best], scores[best]
    order = np.lexsort((ids, -scores))
    order = order[np.isfinite(scores[order])]
    return ids[order], scores[order]
