"""Turning counts into backoff tables: interpolated modified Kneser-Ney exactly as KenLM's
``lmplz`` computes it, and stupid backoff renormalised into a proper distribution.

Both produce, per order, log10 probabilities and (below the top order) log10 backoff weights:
the ARPA representation, from which ordinary backoff gives the model back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import ForetellError
from engine.vocab import BOS_ID
from plugins.ngram.counts import NgramCounts

F32 = np.float32
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz --discount_fallback


@dataclass
class BackoffTables:
    logp: list[np.ndarray]  # float32 log10 p per order
    backoff: list[np.ndarray]  # float32 log10 backoff per order (the top order: zeros)
    facts: dict


def adjusted_counts(counts: NgramCounts) -> list[np.ndarray]:
    """KenLM's a(g): continuation counts, except the top order and n-grams starting with <s>."""
    orders = counts.orders
    adjusted = []
    for k, o in enumerate(orders, start=1):
        if k == len(orders):
            a = o.counts.copy()
        else:
            a = np.bincount(orders[k].suffix, minlength=len(o.keys)).astype(np.int64)
            a[o.starts_bos] = o.counts[o.starts_bos]
        if k == 1:
            a[BOS_ID] = 0
        adjusted.append(a)
    return adjusted


def count_of_counts(counts: NgramCounts, adjusted: list[np.ndarray]) -> list[list[int]]:
    """n1..n4 of a(g) per order, with lmplz's quirk: the suffixes of the N-gram it sorts last
    count with their raw count here (and nowhere else)."""
    result = []
    for k, a in enumerate(adjusted, start=1):
        stats = a
        if k < len(adjusted) and counts.last_suffixes[k - 1] >= 0:
            stats = a.copy()
            g = counts.last_suffixes[k - 1]
            stats[g] = counts.orders[k - 1].counts[g]
        small = np.bincount(np.minimum(stats, 5), minlength=6)
        result.append([int(small[j]) for j in range(1, 5)])
    return result


def discounts_from(n: list[int]) -> np.ndarray | None:
    """[0, D1, D2, D3+] in float32 as Chen and Goodman eq. 26 (lmplz's arithmetic), or None."""
    n1, n2, n3, n4 = n
    if min(n1, n2, n3) == 0:
        return None
    y = F32(n1) / F32(n1 + 2.0 * n2)
    d = [F32(0)]
    for j, (nj, nj1) in enumerate(((n1, n2), (n2, n3), (n3, n4)), start=1):
        d.append(F32(j) - F32(j + 1) * y * F32(nj1) / F32(nj))
        if not 0 <= d[-1] <= j:
            return None
    return np.array(d, dtype=F32)


def kneser_ney(counts: NgramCounts, allow_fallback: bool = True) -> BackoffTables:
    """Interpolated modified Kneser-Ney, number for number as lmplz (float32 throughout). An
    order whose counts of counts give no valid discounts takes lmplz's fallback ones (recorded
    in the facts), or, when ``allow_fallback`` is off, the training stops saying so."""
    V = counts.vocab_size
    adjusted = adjusted_counts(counts)
    stats = count_of_counts(counts, adjusted)
    estimated = [discounts_from(n) for n in stats]
    fell_back = [k for k, d in enumerate(estimated, start=1) if d is None]
    if fell_back and not allow_fallback:
        which = "; ".join(f"order {k}: n1-n4 {'/'.join(map(str, stats[k - 1]))}" for k in fell_back)
        raise ForetellError(
            f"modified Kneser-Ney discounts cannot be estimated from this text ({which}: too little text, or no n-gram "
            f"seen once); train on more text or a lower --order, or allow lmplz's fallback discounts "
            f"{', '.join(f'{x:g}' for x in FALLBACK_DISCOUNTS)} (--discount-fallback)"
        )
    fallback = np.array((0.0,) + FALLBACK_DISCOUNTS, dtype=F32)
    discounts = [fallback if d is None else d for d in estimated]
    uniform = F32(1.0 / F32(V - 1))  # over the vocabulary without <s>
    logp, backoff = [], []
    lower = None
    for k, (o, a, d) in enumerate(zip(counts.orders, adjusted, discounts), start=1):
        if k == 1:
            ctx, n_ctx = np.zeros(len(a), dtype=np.int64), 1
        else:
            ctx, n_ctx = (o.keys // np.uint64(V)).astype(np.int64), len(counts.orders[k - 2].keys)
        capped = np.minimum(a, 3).astype(np.int8)
        gamma = np.zeros(n_ctx, dtype=F32)
        for j in (1, 2, 3):
            gamma += d[j] * np.bincount(ctx[capped == j], minlength=n_ctx).astype(F32)
        denominator = np.bincount(ctx, weights=a, minlength=n_ctx).astype(F32)
        is_context = denominator > 0
        gamma = np.divide(gamma, denominator, out=np.zeros(n_ctx, dtype=F32), where=is_context)
        # (a - D) / c(context) + gamma(context) * p(w | shorter context), in place: the top
        # order is the largest array training holds, and each temporary of it counts
        prob = a.astype(F32)
        adjusted[k - 1] = None
        del a
        prob -= d[capped]
        del capped
        prob /= denominator[ctx]
        interpolation = gamma[ctx]
        del ctx
        interpolation *= uniform if k == 1 else lower[o.suffix]
        prob += interpolation
        del interpolation
        logp.append(_log10(prob))
        if k > 1:
            backoff.append(_log10_backoff(gamma, is_context))
        lower = prob
    logp[0][BOS_ID] = 0.0  # KenLM's convention: <s> is context only
    backoff.append(np.zeros(len(logp[-1]), dtype=F32))
    facts = {"discounts": [[float(x) for x in d[1:]] for d in discounts], "counts_of_counts": stats}
    if fell_back:
        facts["discount_fallback"] = {"orders": fell_back, "discounts": list(FALLBACK_DISCOUNTS)}
    return BackoffTables(logp, backoff, facts)


def _log10(values: np.ndarray, block: int = 1 << 20) -> np.ndarray:
    """float32 log10 of float32 values, computed in float64 as lmplz does, a block at a time."""
    out = np.empty(len(values), dtype=F32)
    for start in range(0, len(values), block):
        out[start : start + block] = np.log10(values[start : start + block].astype(np.float64))
    return out


def _log10_backoff(weights: np.ndarray, is_context: np.ndarray) -> np.ndarray:
    out = np.zeros(len(weights), dtype=F32)
    out[is_context] = _log10(weights[is_context])
    return out


def fallback_note(fallback) -> str:
    """The sentence that says which orders took the fallback discounts (models saved before the
    orders were recorded hold only the discounts)."""
    values = fallback.get("discounts", FALLBACK_DISCOUNTS) if isinstance(fallback, dict) else fallback
    orders = fallback.get("orders") if isinstance(fallback, dict) else None
    which = f"order{'s' if len(orders) > 1 else ''} {', '.join(map(str, orders))}" if orders else "some orders"
    return (f"{which}: the counts of counts give no modified Kneser-Ney discounts (too little text, or no n-gram seen once), "
            f"so lmplz's fallback discounts {', '.join(f'{x:g}' for x in values)} were used (--no-discount-fallback refuses instead)")


def stupid_backoff(counts: NgramCounts, alpha: float = 0.4) -> BackoffTables:
    """Brants et al. (2007) scores S(w|h) = c(hw)/c(h), else alpha * S(w|h'), divided by their
    sum over the vocabulary so that they are probabilities. Unigrams are add-one estimates."""
    V = counts.vocab_size
    uni = counts.orders[0].counts.astype(np.float64)
    uni[BOS_ID] = 0
    unigram = (uni + 1) / (uni.sum() + V - 1)
    unigram[BOS_ID] = 0
    logp = [np.log10(np.where(unigram > 0, unigram, 1)).astype(F32)]
    backoff = []
    z_lower = np.ones(1)  # normaliser of the (k-2)-gram contexts; the empty context sums to 1
    scores_lower = unigram  # unnormalised S of the (k-1)-grams
    for k in range(2, len(counts.orders) + 1):
        o, ctx_order = counts.orders[k - 1], counts.orders[k - 2]
        ctx = (o.keys // np.uint64(V)).astype(np.int64)
        n_ctx = len(ctx_order.keys)
        totals = np.bincount(ctx, weights=o.counts, minlength=n_ctx)
        scores = o.counts / totals[ctx]
        context_suffix = np.zeros(n_ctx, dtype=np.int64) if k == 2 else ctx_order.suffix
        covered = np.bincount(ctx, weights=scores_lower[o.suffix], minlength=n_ctx)
        z_suffix = z_lower[context_suffix]
        is_context = totals > 0
        z = np.where(is_context, 1 + alpha * (z_suffix - covered), z_suffix)
        logp.append(np.log10(scores / z[ctx]).astype(F32))
        backoff.append(_log10_backoff(alpha * z_suffix / z, is_context))
        z_lower, scores_lower = z, scores
    backoff.append(np.zeros(len(logp[-1]), dtype=F32))
    return BackoffTables(logp, backoff, {"alpha": alpha})

