"""The surprisal report: one self-contained HTML page (inline CSS and JS, no network) with every
word coloured by how surprising it was, a tooltip per word, a header and a histogram, and two
models side by side when asked (``foretell score --html``).

The page carries the text once and, per model, compact arrays (bits, rank, entropy, OOV flags,
the five expected words as indices into one word table); the words are spans rendered here, and
one delegated mouse handler fills a single tooltip, so 100,000 words stay responsive.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from engine.model import LanguageModel
from engine.scoring import encode, perplexity_of_scores, score_tokens
from engine.tokenizer import tokenize
from engine.vocab import BOS_ID

TEMPLATE = Path(__file__).with_name("report_template.html")
EXPECTED = 5
RANK_LIMITS = (10, 100, 1000)  # GLTR's buckets: top 10, top 100, top 1000, beyond


def bucket(rank: int) -> int:
    for i, limit in enumerate(RANK_LIMITS):
        if rank <= limit:
            return i
    return len(RANK_LIMITS)


def model_report(model: LanguageModel, name: str, text: str, pretokenized: bool = False) -> dict:
    """Everything the page shows about one model's reading of ``text``."""
    sentences = tokenize(text, pretokenized)
    scores = score_tokens(model, sentences)
    ids = encode(model, sentences)
    top_ids, top_logprobs = model.expected(ids, EXPECTED)
    expected, expected_logprobs = top_ids[ids != BOS_ID], top_logprobs[ids != BOS_ID]  # (scored tokens, k)
    shown = [i for i, s in enumerate(scores) if s.start is not None]
    words = sorted({int(w) for w in expected[shown].ravel() if w >= 0})
    index = {w: i for i, w in enumerate(words)}
    return {
        "name": name,
        "backend": model.name,
        "perplexity": perplexity_of_scores(scores),
        "tokens": len(scores),
        "oov": sum(s.oov for s in scores),
        "bits_all": [round(s.surprisal_bits, 3) for s in scores],  # every token, </s> too (histogram)
        "start": [scores[i].start for i in shown],
        "end": [scores[i].end for i in shown],
        "bits": [round(scores[i].surprisal_bits, 3) for i in shown],
        "rank": [scores[i].rank for i in shown],
        "entropy": [round(scores[i].entropy_bits, 3) for i in shown],
        "oovs": [i for i, j in enumerate(shown) if scores[j].oov],
        "expected": [[index[int(w)] for w in expected[i] if w >= 0] for i in shown],
        "words": [model.vocab.tokens[w] for w in words],
        "expected_prob": [[round(float(np.exp(p)), 4) for p in expected_logprobs[i] if np.isfinite(p)] for i in shown],
    }


def render(text: str, reports: list[dict], title: str, curves_svg: str | None = None) -> str:
    """The page. Word spans are placed from the first model's offsets (the texts are the same,
    and every model here tokenizes them the same way)."""
    first = reports[0]
    parts, pos = [], 0
    for i, (start, end) in enumerate(zip(first["start"], first["end"])):
        parts.append(html.escape(text[pos:start]))
        parts.append(f'<span class="w b{bucket(first["rank"][i])}">{html.escape(text[start:end])}</span>')
        pos = end
    parts.append(html.escape(text[pos:]))
    data = json.dumps({"models": reports, "title": title}, ensure_ascii=False, separators=(",", ":"))
    page = TEMPLATE.read_text(encoding="utf-8")
    return (
        page.replace("{{TITLE}}", html.escape(title))
        .replace("{{TEXT}}", "".join(parts))
        .replace("{{CURVES}}", curves_svg or "")
        .replace("{{DATA}}", data.replace("</", "<\\/"))
    )


def check_same_tokens(reports: list[dict]) -> None:
    from engine.errors import ForetellError

    for r in reports[1:]:
        if r["start"] != reports[0]["start"]:
            raise ForetellError("the models split this text into different tokens; compare them one at a time")
