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

from engine.distribution import rank_buckets
from engine.model import LanguageModel
from engine.scoring import encode, perplexity_of_scores, score_tokens
from engine.tokenizer import tokenize
from engine.vocab import BOS_ID

TEMPLATE = Path(__file__).with_name("report_template.html")
EXPECTED = 5


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
    """The page. Each word span carries its colour classes for every view (rank bucket and
    surprisal band of each model, and their difference), so switching views is one class change
    on the text, not a pass over 100,000 words. Spans are placed from the first model's offsets
    (the texts are the same, and ``check_same_tokens`` made sure the tokens are)."""
    first = reports[0]
    oov = [set(r["oovs"]) for r in reports]
    buckets = [rank_buckets(r["rank"]) for r in reports]
    parts, pos = [], 0
    for i, (start, end) in enumerate(zip(first["start"], first["end"])):
        classes = ["w"]
        for k, (r, missing) in enumerate(zip(reports, oov)):
            classes += [f"{VIEW_CLASSES[k][0]}{buckets[k][i]}", f"{VIEW_CLASSES[k][1]}{band(r['bits'][i])}"]
            if i in missing:
                classes.append(VIEW_CLASSES[k][2])
        if len(reports) > 1:
            classes.append(f"d{difference(first['bits'][i], reports[1]['bits'][i])}")
        parts.append(html.escape(text[pos:start]))
        parts.append(f'<span class="{" ".join(classes)}">{html.escape(text[start:end])}</span>')
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


VIEW_CLASSES = (("a", "p", "o"), ("r", "q", "u"))  # per model: rank bucket, bits band, out of vocabulary
BANDS = 9  # surprisal bands of 2 bits: 0-2, 2-4, ..., 16 and more


def band(bits: float) -> int:
    return min(BANDS - 1, int(bits // 2))


def difference(a_bits: float, b_bits: float) -> int:
    """-3..3 (stored 0..6): how many 2-bit steps the first model was less (negative) or more
    surprised than the second."""
    return int(max(-3, min(3, round((a_bits - b_bits) / 2)))) + 3


def check_same_tokens(reports: list[dict]) -> None:
    from engine.errors import ForetellError

    for r in reports[1:]:
        if r["start"] != reports[0]["start"]:
            raise ForetellError("the models split this text into different tokens; compare them one at a time")
