"""Neural models learning the user's documents: perplexity on the second half of each held-out
file of Python's reST docs, before and after the model learns its first half.

    apt-get install python3.11-doc
    python bench/adaptation_neural.py [--home DIR] [--rnn-minutes 8] [--window-minutes 5]
                                      [--factors 1,0.3,0.1] [--passes 1,2,3] [--eval-tokens 40000]

The same split as bench/adaptation_pydocs.py (every 20th file from the 8th held out; training on
the files not held out). Models are trained once into ``--home`` (kept: a second run with the same
home reuses them) with the backends' defaults and a time budget. For each held-out file the model
learns its first half through ``foretell learn``'s code path (the adaptation layer, then loading
the model as every command does) and scores its second half; each model's own vocabulary encodes
the text, so a word it learned counts with its own probability and one it never saw as ``<unk>``.
The n-gram model (Kneser-Ney, order 4) is beside it on the same halves. ``--factors`` and
``--passes`` sweep the learning rate (a multiple of the rate training started at) and the passes
over the learned text; the product's default is marked.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.adaptation_pydocs import DOCS, capped, halves, split  # noqa: E402


def log_likelihood(model, sentences) -> tuple[float, int]:
    from engine.scoring import encode

    scores = model.score_ids(encode(model, sentences))
    scored = scores[~np.isnan(scores)]
    return float(scored.sum()), len(scored)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", help="store to train into or reuse (default: a new temporary one)")
    parser.add_argument("--rnn-minutes", type=float, default=8)
    parser.add_argument("--window-minutes", type=float, default=5)
    parser.add_argument("--factors", default="", help="learning rates to sweep, as multiples of the training lr")
    parser.add_argument("--passes", default="", help="passes to sweep")
    parser.add_argument("--eval-tokens", type=int, default=40000, help="tokens of second halves scored at most")
    args = parser.parse_args()
    if not DOCS.exists():
        raise SystemExit(f"{DOCS} is missing: apt-get install python3.11-doc")
    os.environ["FORETELL_HOME"] = args.home or tempfile.mkdtemp(prefix="foretell-bench-")
    from engine.corpus import CorpusBuilder, build_corpus, find_files, read_text
    from engine.model import options_from_strings
    from engine.plugins import get_backend
    from engine.store import ModelStore
    from engine.tokenizer import split_lines, tokenize

    files, _ = find_files([str(DOCS)])
    train, _, held = split(sorted(files))
    store = ModelStore()
    budgets = {"ngram": None, "rnn": args.rnn_minutes, "window": args.window_minutes}
    corpus = None
    for name, minutes in budgets.items():
        if store.path(name).exists():
            continue
        corpus = corpus or build_corpus([str(f) for f in train])
        cls = get_backend(name).cls
        options = cls.Options() if minutes is None else options_from_strings(cls.Options, {"max_minutes": str(minutes), "epochs": "100"})
        t0 = time.monotonic()
        store.save(name, cls.fit(corpus, options))
        print(f"{name} trained in {(time.monotonic() - t0) / 60:.1f} min on {corpus.summary['tokens']:,} tokens", flush=True)

    documents, budget = [], args.eval_tokens
    for f in held:
        first, second = halves(read_text(str(f)))
        sentences = capped(tokenize(second), budget)
        if sentences and first.strip():
            documents.append((str(f), first, sentences))
            budget -= sum(len(s) + 1 for s in sentences)
        if budget <= 0:
            break
    learned_tokens = sum(len(s) + 1 for _, first, _ in documents for s in tokenize(first))
    print(f"machine: {os.cpu_count()} cores; {len(documents)} held-out files: first halves learned "
          f"(about {learned_tokens:,} tokens in all), second halves scored\n")
    print("| model | learning rate | passes | perplexity before | after | change | learning time per file |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in budgets:
        base = store.load(name)
        settings = [None]  # the product's default, through the store
        if name != "ngram":
            settings += [(float(f), int(p)) for f in filter(None, args.factors.split(",")) for p in filter(None, args.passes.split(","))]
        for setting in settings:
            before, after, tokens, seconds = 0.0, 0.0, 0, 0.0
            for key, first, sentences in documents:
                t0 = time.monotonic()
                if setting is None:
                    layer = store.layer(name)
                    layer.learn(key, first, base)
                    adapted = store.load(name)
                    layer.forget(None)
                else:
                    factor, passes = setting
                    tuned = dataclasses.replace(base.options, adapt_lr=base.options.lr * factor, adapt_passes=passes)
                    builder = CorpusBuilder(False, known=base.vocab.tokens)
                    builder.add_lines(split_lines(first))
                    words = builder.vocab.tokens[len(base.vocab):]
                    adapted = type(base)(base.vocab, tuned, base.net, base.facts, base.metrics).with_documents(words, [np.asarray(builder.ids.finish())])
                seconds += time.monotonic() - t0
                b, n = log_likelihood(base, sentences)
                a, _ = log_likelihood(adapted, sentences)
                before, after, tokens = before + b, after + a, tokens + n
            ppl_before, ppl_after = math.exp(-before / tokens), math.exp(-after / tokens)
            lr = "default" if setting is None else f"{setting[0]:g} x lr"
            passes = "default" if setting is None else setting[1]
            print(f"| {name} | {lr} | {passes} | {ppl_before:.2f} | {ppl_after:.2f} | {100 * (ppl_after / ppl_before - 1):+.1f} % | "
                  f"{seconds / len(documents):.2f} s |", flush=True)


if __name__ == "__main__":
    main()
