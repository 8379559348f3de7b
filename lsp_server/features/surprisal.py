"""Surprisal views: semantic tokens by rank bucket, hover, inlay hints, diagnostics and the
``foretell/surprisal`` payload, all read off a DocumentAnalysis."""

from __future__ import annotations

import math

import numpy as np
from lsprotocol import types

from engine.complete import top_completions
from engine.distribution import rank_buckets
from engine.analysis import DocumentAnalysis
from lsp_server.positions import PositionMap

# GLTR's buckets: where the word ranked in the model's prediction.
TOKEN_TYPES = ["foretellTop10", "foretellTop100", "foretellTop1000", "foretellRare"]
TOKEN_MODIFIERS = ["unknown"]
LEGEND = types.SemanticTokensLegend(token_types=TOKEN_TYPES, token_modifiers=TOKEN_MODIFIERS)


def _range(posmap: PositionMap, start: int, end: int) -> types.Range:
    sl, sc = posmap.position(start)
    el, ec = posmap.position(end)
    return types.Range(start=types.Position(line=sl, character=sc), end=types.Position(line=el, character=ec))


def semantic_token_data(analysis: DocumentAnalysis, posmap: PositionMap) -> np.ndarray:
    """Every word as (delta line, delta start, length, bucket, modifiers), LSP's relative encoding."""
    words = analysis.words
    lines, chars = posmap.positions(analysis.starts[words])
    _, ends = posmap.positions(analysis.ends[words])
    delta_line = np.diff(lines, prepend=0)
    delta_char = np.where(delta_line == 0, np.diff(chars, prepend=0), chars)
    data = np.stack([delta_line, delta_char, ends - chars, rank_buckets(analysis.rank[words]), analysis.oov[words].astype(np.int64)], axis=1)
    return data.ravel()


def token_edits(old: np.ndarray, new: np.ndarray) -> list[types.SemanticTokensEdit]:
    """One edit turning ``old`` into ``new``: what lies between their common prefix and suffix."""
    n = min(len(old), len(new))
    differ = np.flatnonzero(old[:n] != new[:n])
    prefix = int(differ[0]) if len(differ) else n
    tail = min(len(old), len(new)) - prefix
    differ = np.flatnonzero(old[len(old) - tail :][::-1] != new[len(new) - tail :][::-1]) if tail else np.zeros(0)
    suffix = int(differ[0]) if len(differ) else tail
    if prefix == len(old) == len(new):
        return []
    return [types.SemanticTokensEdit(start=prefix, delete_count=len(old) - prefix - suffix, data=new[prefix : len(new) - suffix].tolist())]


def expected_words(analysis: DocumentAnalysis, index: int, k: int = 5) -> list[tuple[str, float]]:
    model = analysis.model
    dist = model.next_logprobs(analysis.state_before(index))
    return [(model.vocab.tokens[i], math.exp(lp)) for i, lp in top_completions(model, dist, "", k)]


def hover(analysis: DocumentAnalysis, posmap: PositionMap, index: int) -> types.Hover:
    bits = float(analysis.bits[index])
    expected = ", ".join(f"`{w}` {p:.1%}" for w, p in expected_words(analysis, index))
    oov = " (not in the model's vocabulary: scored as `<unk>`)" if analysis.oov[index] else ""
    text = (
        f"**{analysis.texts[index]}**{oov}\n\n"
        f"surprisal **{bits:.2f} bits** · probability {2 ** -bits:.4f} · rank {int(analysis.rank[index]):,} · "
        f"entropy {float(analysis.entropy[index]):.2f} bits\n\nexpected: {expected}"
    )
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
        range=_range(posmap, int(analysis.starts[index]), int(analysis.ends[index])),
    )


def surprising(analysis: DocumentAnalysis, threshold: float, start: int = 0, end: int | None = None) -> np.ndarray:
    words = analysis.words
    keep = analysis.bits[words] >= threshold
    if end is not None:
        keep &= (analysis.ends[words] >= start) & (analysis.starts[words] <= end)
    return words[keep]


def inlay_hints(analysis: DocumentAnalysis, posmap: PositionMap, threshold: float, start: int, end: int) -> list[types.InlayHint]:
    hints = []
    for index in surprising(analysis, threshold, start, end):
        line, char = posmap.position(int(analysis.ends[index]))
        hints.append(
            types.InlayHint(
                position=types.Position(line=line, character=char),
                label=f"{analysis.bits[index]:.1f}b",
                padding_left=True,
                tooltip=f"surprisal {analysis.bits[index]:.2f} bits, rank {int(analysis.rank[index]):,}",
            )
        )
    return hints


def diagnostics(analysis: DocumentAnalysis, posmap: PositionMap, threshold: float, limit: int = 1000) -> list[types.Diagnostic]:
    out = []
    for index in surprising(analysis, threshold)[:limit]:
        out.append(
            types.Diagnostic(
                range=_range(posmap, int(analysis.starts[index]), int(analysis.ends[index])),
                severity=types.DiagnosticSeverity.Hint,
                source="foretell",
                code="surprising-word",
                message=f"surprising word: {analysis.bits[index]:.1f} bits (rank {int(analysis.rank[index]):,})",
            )
        )
    return out


def surprisal_payload(analysis: DocumentAnalysis, posmap: PositionMap) -> dict:
    """The ``foretell/surprisal`` response (DESIGN.md)."""
    words = analysis.words
    start_lines, start_chars = posmap.positions(analysis.starts[words])
    end_lines, end_chars = posmap.positions(analysis.ends[words])
    columns = zip(
        start_lines.tolist(), start_chars.tolist(), end_lines.tolist(), end_chars.tolist(), [analysis.texts[i] for i in words],
        analysis.bits[words].tolist(), analysis.rank[words].tolist(), analysis.entropy[words].tolist(),
    )
    tokens = [
        {"range": {"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}}, "token": t, "surprisal_bits": b, "rank": r, "entropy_bits": e}
        for sl, sc, el, ec, t, b, r, e in columns
    ]
    perplexity = analysis.perplexity
    return {"tokens": tokens, "perplexity": perplexity if math.isfinite(perplexity) else None}
