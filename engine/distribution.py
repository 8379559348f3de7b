"""Facts about one next-token distribution: the rank of a token and the entropy."""

from __future__ import annotations

import math

import numpy as np

TIE = 1e-9  # log10 units: values closer than this count as tied (not ranked above)
LOG2E = 1 / math.log(2)
_TIE_LN = TIE * math.log(10)


RANK_BUCKET_LIMITS = np.array([10, 100, 1000])  # GLTR's buckets: top 10, top 100, top 1000, beyond


def rank_buckets(ranks):
    """0-3: the GLTR bucket of each rank (top 10, 100, 1000, beyond); an int for an int."""
    return np.searchsorted(RANK_BUCKET_LIMITS, ranks, side="left")


def rank_and_entropy(dist: np.ndarray, token_id: int) -> tuple[int, float]:
    """Rank of ``token_id`` in ``dist`` (natural logs; 1 = most probable) and entropy in bits."""
    rank = 1 + int(np.count_nonzero(dist > dist[token_id] + _TIE_LN))
    finite = dist[np.isfinite(dist)]
    p = np.exp(finite)
    return rank, float(-(p * finite).sum() * LOG2E)
