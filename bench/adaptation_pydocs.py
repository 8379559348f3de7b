"""Keystroke savings on Python's reST documentation: n-gram, rnn, cache, fitted mixtures, and the
n-gram adapting to each held-out file as it is typed.

    apt-get install python3.11-doc
    python bench/adaptation_pydocs.py [--rnn-minutes 10] [--eval-tokens 30000]

Files under /usr/share/doc/python3.11/html/_sources, sorted: every 20th (from the 8th) is held out
for evaluation, every 20th (from the 14th) is the user's own held-out text the mixture weights are
fitted on by EM, the rest is training text. Every model is evaluated by ``engine.evaluate`` (the
code behind ``foretell evaluate``): perplexity, top-1/top-5 next-word accuracy and keystroke
savings with 5 completions offered. Adaptation: for each evaluation file, the n-gram model learns
its first half (``foretell learn``'s code path, into a throwaway store) and is evaluated on the
second half, beside the unadapted n-gram and the mixture on the same second halves.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOCS = Path("/usr/share/doc/python3.11/html/_sources")


def split(files: list[Path]):
    evaluation = [f for i, f in enumerate(files) if i % 20 == 7]
    fit = [f for i, f in enumerate(files) if i % 20 == 13]
    train = [f for i, f in enumerate(files) if i % 20 not in (7, 13)]
    return train, fit, evaluation


def capped(sentences, tokens: int):
    out, n = [], 0
    for s in sentences:
        if n >= tokens:
            break
        out.append(s)
        n += len(s) + 1
    return out


def halves(text: str) -> tuple[str, str]:
    """The file's paragraphs split in two at the middle."""
    blocks = text.split("\n\n")
    middle = len(blocks) // 2
    return "\n\n".join(blocks[:middle]), "\n\n".join(blocks[middle:])


def row(name, model, evaluation, seconds):
    f = evaluation.as_dict()
    return (f"| {name} | {model.name} | {f['perplexity']:.2f} | {f['top1_accuracy']:.1%} | {f['top5_accuracy']:.1%} | "
            f"{f['keystroke_savings']:.1%} | {f['tokens']:,} | {seconds:.0f} s |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rnn-minutes", type=float, default=10)
    parser.add_argument("--eval-tokens", type=int, default=30000, help="tokens of held-out text each model types")
    parser.add_argument("-O", "--rnn-option", action="append", default=[], help="rnn option KEY=VALUE")
    args = parser.parse_args()
    if not DOCS.exists():
        raise SystemExit(f"{DOCS} is missing: apt-get install python3.11-doc")
    os.environ["FORETELL_HOME"] = tempfile.mkdtemp(prefix="foretell-bench-")
    from engine.corpus import build_corpus, find_files, read_text
    from engine.evaluate import Evaluation, evaluate
    from engine.model import options_from_strings
    from engine.plugins import get_backend
    from engine.scoring import encode
    from engine.store import ModelStore
    from engine.tokenizer import tokenize

    files, _ = find_files([str(DOCS)])
    train, fit, held = split(sorted(files))
    store = ModelStore()
    started = time.monotonic()
    corpus = build_corpus([str(f) for f in train])
    print(f"machine: {os.cpu_count()} cores; training files {len(train)}, {corpus.summary['tokens']:,} tokens, "
          f"vocabulary {len(corpus.vocab):,}; fit files {len(fit)}; evaluation files {len(held)}", flush=True)
    ngram, cache, rnn = (get_backend(n).cls for n in ("ngram", "cache", "rnn"))
    t0 = time.monotonic()
    store.save("ngram", ngram.fit(corpus, ngram.Options()))
    print(f"ngram (order 4, Kneser-Ney) trained in {time.monotonic() - t0:.1f} s", flush=True)
    store.save("cache", cache.fit(corpus, cache.Options()))
    rnn_values = {"max_minutes": str(args.rnn_minutes), "epochs": "100", **dict(kv.split("=", 1) for kv in args.rnn_option)}
    t0 = time.monotonic()
    recurrent = rnn.fit(corpus, options_from_strings(rnn.Options, rnn_values))
    store.save("rnn", recurrent)
    print(f"rnn {rnn_values} trained in {(time.monotonic() - t0) / 60:.1f} min, {recurrent.facts.get('epochs_run')} epochs", flush=True)

    mix = get_backend("mix").cls
    fit_sentences = [s for f in fit for s in tokenize(read_text(str(f)))]
    for name, parts in (("mix-ngram-cache", ["ngram", "cache"]), ("mix-all", ["ngram", "rnn", "cache"])):
        union = mix.combine(store.load_parts(parts), parts)
        model, report = union.fitted(encode(union, fit_sentences))
        store.save(name, model)
        weights = ", ".join(f"{p['name']} {p['weight']:.3f}" for p in report["parts"])
        print(f"{name}: EM weights {weights} ({report['iterations']} iterations on {report['tokens']:,} tokens)", flush=True)

    evaluation_sentences = capped([s for f in held for s in tokenize(read_text(str(f)))], args.eval_tokens)
    print("\n| model | backend | perplexity | top-1 | top-5 | keystroke savings (k=5) | tokens | time |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("ngram", "rnn", "cache", "mix-ngram-cache", "mix-all"):
        model = store.load(name)
        t0 = time.monotonic()
        result = evaluate(model, [evaluation_sentences], 5)
        print(row(name, model, result, time.monotonic() - t0), flush=True)

    # Adaptation: learn each held-out file's first half, type its second half.
    base = store.load("ngram")
    layer = store.layer("ngram")
    totals = {"ngram": Evaluation(), "ngram adapted to the first half": Evaluation(), "mix-all": Evaluation()}
    budget = args.eval_tokens
    for f in held:
        if budget <= 0:
            break
        first, second = halves(read_text(str(f)))
        sentences = capped(tokenize(second), budget)
        if not sentences or not first.strip():
            continue
        budget -= sum(len(s) + 1 for s in sentences)
        layer.learn(str(f), first, base)
        adapted = store.load("ngram")
        layer.forget(None)
        for name, model in (("ngram", base), ("ngram adapted to the first half", adapted), ("mix-all", store.load("mix-all"))):
            result = evaluate(model, [sentences], 5)
            for field in ("tokens", "top1", "top5", "log_prob", "characters", "keystrokes"):
                setattr(totals[name], field, getattr(totals[name], field) + getattr(result, field))
    print("\nSecond halves of the evaluation files, after learning each first half:\n")
    print("| model | backend | perplexity | top-1 | top-5 | keystroke savings (k=5) | tokens | time |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, result in totals.items():
        print(row(name, base if name.startswith("ngram") else store.load("mix-all"), result, 0))
    print(f"\ntotal {(time.monotonic() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
