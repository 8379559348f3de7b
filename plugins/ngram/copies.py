"""Sentences a long text repeats, found so that each is counted once, weighted by its copies.

Counting a chunk costs the same whether or not its sentences were seen before, so a text with
many repeated sentences (quoted mail, boilerplate, a corpus of shuffled copies) cost as much as
one that never repeats; lmplz's hash table merges repeats before anything is sorted. Here every
sentence (from one ``<s>`` to the next) gets two 64-bit polynomial hashes and its length; the
sentences of a window of the text that agree on all three are one sentence with a weight, and
the counting jobs gather only first copies. Counts come out the same (a test checks it); a
window is as many sentences as a share of the memory budget holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.memory import hand_back
from engine.vocab import BOS_ID
from plugins.ngram.search import unique_inverse

SENTENCE_BYTES = 128  # working memory a sentence of a window takes while its copies are found
WINDOW_SHARE = 4  # a window's sentences may take this share of the budget (the counting jobs share the rest)
BASES = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))  # the hashes' bases (odd)


@dataclass
class Copies:
    """Sentences to count, each a stretch of the text, with how many times each occurs (the
    first copy stands for the others, which are left out)."""

    starts: np.ndarray  # int64, ascending
    lengths: np.ndarray  # int64
    weights: np.ndarray  # int64

    def positions(self) -> np.ndarray:
        """The text's positions these sentences cover, in order."""
        ends = np.cumsum(self.lengths)
        return np.repeat(self.starts - ends + self.lengths, self.lengths) + np.arange(int(ends[-1]) if len(ends) else 0)

    def jobs(self, chunk: int):
        """These sentences cut into pieces of about ``chunk`` positions (whole sentences)."""
        ends = np.cumsum(self.lengths)
        cuts = np.unique(np.searchsorted(ends, np.arange(chunk, int(ends[-1]), chunk), side="right")) if len(ends) else []
        for lo, hi in zip([0, *cuts], [*cuts, len(ends)]):
            if hi > lo:
                yield Copies(self.starts[lo:hi], self.lengths[lo:hi], self.weights[lo:hi])


def counting_jobs(ids, blocks, chunk: int, budget: int):
    """Jobs for counting ``ids`` given its ``blocks`` (whole sentences each, in order): a block
    as (start, stop) where its window repeats no sentence, else ``Copies`` of about ``chunk``
    positions. A window is blocks until it holds the sentences a quarter of ``budget`` allows."""
    limit = max(1, budget // WINDOW_SHARE // SENTENCE_BYTES)
    window, held = [], 0
    for start, stop in blocks:
        block = np.asarray(ids[start:stop])
        starts = np.flatnonzero(block == BOS_ID)
        if len(starts) == 0 or starts[0] != 0:  # (text before the first <s> is a sentence of its own)
            starts = np.concatenate(([0], starts))
        window.append((start, stop, starts + start, _hashes(block, starts)))
        held += len(starts)
        hand_back(ids)
        if held >= limit:
            yield from _window_jobs(window, chunk)
            window, held = [], 0
    yield from _window_jobs(window, chunk)


def _window_jobs(window: list, chunk: int):
    if not window:
        return
    starts = np.concatenate([w[2] for w in window])
    stops = np.append(starts[1:], window[-1][1])
    hashes = [np.concatenate([w[3][i] for w in window]) for i in range(2)]
    weights = _weights(hashes[0], hashes[1], stops - starts)
    if (weights == 1).all():  # nothing repeats here: count the blocks as they are
        for start, stop, _, _ in window:
            yield start, stop
        return
    first = np.flatnonzero(weights)
    yield from Copies(starts[first], (stops - starts)[first], weights[first]).jobs(chunk)


def _weights(h1: np.ndarray, h2: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each sentence's copies where it is the first of them, 0 where it is a later copy: the
    sentences that share the first hash are one where the second hash and the length agree with
    the first of them too (otherwise they stay apart, counted as they are)."""
    _, first, inverse, _ = unique_inverse(h1, first=True)
    first = first[inverse]  # each sentence's first sentence with its first hash
    same = (h2 == h2[first]) & (lengths == lengths[first])
    stands_for = np.where(same, first, np.arange(len(h1)))
    return np.bincount(stands_for, minlength=len(h1))


def _hashes(block: np.ndarray, starts: np.ndarray) -> list[np.ndarray]:
    """Two polynomial hashes of each sentence (starting at ``starts``) of ``block``, modulo
    2^64, over the word ids mixed first (so that no pattern of small ids makes them agree)."""
    lengths = np.diff(np.append(starts, len(block)))
    depth = np.arange(len(block)) - np.repeat(starts, lengths)
    x = block.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)  # (splitmix64's finalizer)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(29)
    longest = int(lengths.max())
    hashes = []
    for base in BASES:
        powers = np.cumprod(np.full(longest, base, dtype=np.uint64))  # (wraps modulo 2^64)
        hashes.append(np.add.reduceat(x * powers[depth], starts))
    return hashes
