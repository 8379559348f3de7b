"""Turning counts into backoff tables: interpolated modified Kneser-Ney exactly as KenLM's
``lmplz`` computes it, and stupid backoff renormalised into a proper distribution.

Both produce, per order, log10 probabilities and (below the top order) log10 backoff weights:
the ARPA representation, from which ordinary backoff gives the model back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import ForetellError
from engine.memory import hand_back, release_pages
from engine.vocab import BOS_ID
from plugins.ngram.counts import NgramCounts
from plugins.ngram.scratch import Scratch, ranges

F32 = np.float32
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz --discount_fallback


@dataclass
class BackoffTables:
    logp: list[np.ndarray]  # float32 log10 p per order
    backoff: list[np.ndarray]  # float32 log10 backoff per order (the top order: zeros)
    facts: dict


KN_BYTES = 128  # working memory an n-gram of an estimation block takes (its arrays and temporaries)


def adjusted_counts(counts: NgramCounts, scratch: Scratch | None = None) -> list[np.ndarray]:
    """KenLM's a(g): continuation counts, except the top order and n-grams starting with <s>
    (the top order's are its raw counts, not copied)."""
    scratch = scratch or Scratch.in_memory()
    orders = counts.orders
    block = scratch.block(KN_BYTES)
    adjusted = []
    for k, o in enumerate(orders, start=1):
        if k == len(orders):
            a = o.counts if k > 1 else np.array(o.counts, dtype=np.int64)
        else:
            a = scratch.zeros(len(o.keys), np.int64, f"adjusted{k}")
            _count_into(a, orders[k].suffix, block)
            _keep_raw_where_bos(a, o, block)
        if k == 1:
            a[BOS_ID] = 0
        adjusted.append(a)
    return adjusted


def _keep_raw_where_bos(a: np.ndarray, o, block: int) -> None:
    """n-grams starting with <s> have no left extensions: their raw counts stand."""
    for start, stop in ranges(len(a), block):
        bos = np.asarray(o.starts_bos[start:stop])
        if bos.any():
            a[start:stop][bos] = np.asarray(o.counts[start:stop])[bos]
        release_pages(a, o.starts_bos, o.counts)


def _count_into(target: np.ndarray, indices: np.ndarray, block: int) -> None:
    """``target += np.bincount(indices)``, a block of ``indices`` at a time."""
    if len(indices) <= block and len(target) <= block:
        target += np.bincount(np.asarray(indices), minlength=len(target))
        return
    for start, stop in ranges(len(indices), block):
        ordered = np.sort(indices[start:stop])
        first = np.flatnonzero(np.diff(ordered, prepend=-1))
        target[ordered[first]] += np.diff(np.append(first, len(ordered)))
        release_pages(target, indices)


def count_of_counts(counts: NgramCounts, adjusted: list[np.ndarray], block: int = 1 << 22) -> list[list[int]]:
    """n1..n4 of a(g) per order, with lmplz's quirk: the suffixes of the N-gram it sorts last
    count with their raw count here (and nowhere else)."""
    result = []
    for k, a in enumerate(adjusted, start=1):
        small = np.zeros(6, dtype=np.int64)
        for start, stop in ranges(len(a), block):
            small += np.bincount(np.minimum(np.asarray(a[start:stop]), 5), minlength=6)
            release_pages(a)
        if k < len(adjusted) and counts.last_suffixes[k - 1] >= 0:
            g = counts.last_suffixes[k - 1]
            small[min(int(a[g]), 5)] -= 1
            small[min(int(counts.orders[k - 1].counts[g]), 5)] += 1
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


def kneser_ney(counts: NgramCounts, allow_fallback: bool = True, scratch: Scratch | None = None) -> BackoffTables:
    """Interpolated modified Kneser-Ney, number for number as lmplz (float32 throughout). An
    order whose counts of counts give no valid discounts takes lmplz's fallback ones (recorded
    in the facts), or, when ``allow_fallback`` is off, the training stops saying so. Each order
    is estimated a block of whole contexts at a time into ``scratch``'s arrays."""
    scratch = scratch or Scratch.in_memory()
    V = counts.vocab_size
    adjusted = adjusted_counts(counts, scratch)
    stats = count_of_counts(counts, adjusted, min(1 << 22, scratch.block(KN_BYTES)))  # (a block: two int64 temporaries an item)
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
    top = len(counts.orders)
    for k, (o, d) in enumerate(zip(counts.orders, discounts), start=1):
        a, adjusted[k - 1] = adjusted[k - 1], None
        n_contexts = 1 if k == 1 else len(counts.orders[k - 2].keys)
        logp_k = scratch.writer(F32, f"logp{k}")
        prob_k = scratch.zeros(len(a), F32, f"prob{k}") if k < top else None  # (the next order's lower estimate)
        backoff_below = scratch.zeros(n_contexts, F32, f"backoff{k - 1}") if k > 1 else None
        blocks = [(0, len(a))] if k == 1 else _context_blocks(o.keys, V, scratch.block(KN_BYTES))
        for start, stop in blocks:
            first, contexts, gamma, is_context, prob = _interpolated(o, a, d, start, stop, V, k == 1)
            # gamma(context) * p(w | shorter context), the shorter context's from the order below
            interpolation = gamma[contexts]
            interpolation *= uniform if k == 1 else lower[np.asarray(o.suffix[start:stop])]
            prob += interpolation
            del interpolation
            values = _log10(prob)
            if k == 1:
                values[BOS_ID] = 0.0  # KenLM's convention: <s> is context only
            logp_k.add(values)
            if prob_k is not None:
                prob_k[start:stop] = prob
            if backoff_below is not None:
                backoff_below[first : first + len(gamma)] = _log10_backoff(gamma, is_context)
            hand_back(a, o.keys, o.suffix, lower, prob_k, backoff_below)
        logp.append(logp_k.finish())
        if backoff_below is not None:
            backoff.append(backoff_below)
        lower = prob_k
    backoff.append(scratch.zeros(len(logp[-1]), F32, f"backoff{top}"))
    facts = {"discounts": [[float(x) for x in d[1:]] for d in discounts], "counts_of_counts": stats}
    if fell_back:
        facts["discount_fallback"] = {"orders": fell_back, "discounts": list(FALLBACK_DISCOUNTS)}
    return BackoffTables(logp, backoff, facts)


def _interpolated(o, a: np.ndarray, d: np.ndarray, start: int, stop: int, V: int, unigrams: bool):
    """For n-grams ``start:stop`` of one order (whole contexts): the first context's index, each
    n-gram's context relative to it, each context's gamma (the mass discounting frees) and
    whether it has continuations, and each n-gram's discounted estimate (a - D) / c(context)."""
    counts = np.asarray(a[start:stop])
    if unigrams:
        first, contexts = 0, np.zeros(len(counts), dtype=np.int64)
    else:
        absolute = (np.asarray(o.keys[start:stop]) // np.uint64(V)).astype(np.int64)
        first = int(absolute[0]) if len(absolute) else 0
        contexts = absolute - first
        del absolute
    n_contexts = int(contexts[-1]) + 1 if len(contexts) else 0
    capped = np.minimum(counts, 3).astype(np.int8)
    gamma = np.zeros(n_contexts, dtype=F32)
    for j in (1, 2, 3):
        gamma += d[j] * np.bincount(contexts[capped == j], minlength=n_contexts).astype(F32)
    denominator = np.bincount(contexts, weights=counts, minlength=n_contexts).astype(F32)
    is_context = denominator > 0
    gamma = np.divide(gamma, denominator, out=np.zeros(n_contexts, dtype=F32), where=is_context)
    # (a - D) / c(context), in place: each temporary of a block counts
    prob = counts.astype(F32)
    del counts
    prob -= d[capped]
    prob /= denominator[contexts]
    return first, contexts, gamma, is_context, prob


def _context_blocks(keys: np.ndarray, V: int, block: int):
    """(start, stop) of blocks of about ``block`` n-grams of one order, each ending where a
    context does (a context's n-grams are contiguous: the keys sort by context first)."""
    n, start, Vu = len(keys), 0, np.uint64(V)
    while start < n:
        stop = min(start + block, n)
        if stop < n:
            context = int(keys[stop]) // V
            cut = int(np.searchsorted(keys, np.uint64(context) * Vu))  # the first n-gram of the context at ``stop``
            stop = cut if cut > start else int(np.searchsorted(keys, np.uint64(context + 1) * Vu))  # (one context larger than a block)
        yield start, stop
        start = stop


def _log10(values: np.ndarray, block: int = 1 << 20) -> np.ndarray:
    """float32 log10 of float32 values, computed in float64 and rounded once (correctly
    rounded), a block at a time. lmplz calls libm's ``log10f``, which glibc 2.36 does not round
    correctly: a quarter of values land one float32 step away (docs/benchmarks.md, ARPA export)."""
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

