"""Neural backends on the Penn Treebank, CPU only, within a training-time budget.

    python bench/neural_ptb.py rnn --minutes 20            # Elman, default settings
    python bench/neural_ptb.py rnn --minutes 40 -O cell=lstm
    python bench/neural_ptb.py window --minutes 20

Trains through the same code path as ``foretell train`` (PTB train as the corpus, PTB valid as
the validation file), then reports test perplexity (KenLM's conventions, `<unk>` as `<oov>`
like the n-gram benchmark), validation perplexity per epoch with the minutes it took, training
tokens/s, and next-word top-10 latency from the incremental state with one thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("backend", choices=["rnn", "window"])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("-O", "--option", action="append", default=[], help="backend option KEY=VALUE")
    parser.add_argument("--save", metavar="NAME", help="also save the model (and NAME-int8) in the store (FORETELL_HOME)")
    args = parser.parse_args()
    from bench.ngram_ptb import prepare
    from engine.corpus import build_corpus
    from engine.model import options_from_strings
    from engine.plugins import get_backend
    from engine.scoring import perplexity
    from engine.tokenizer import tokenize

    paths = prepare()
    corpus = build_corpus([str(paths["train"])], pretokenized=True)
    cls = get_backend(args.backend).cls
    values = dict(pair.split("=", 1) for pair in args.option)
    values.update({"valid": str(paths["valid"]), "max_minutes": str(args.minutes), "epochs": values.get("epochs", "100")})
    options = options_from_strings(cls.Options, values)
    started = time.monotonic()

    def progress(message, fraction):
        if "valid" in message:
            print(f"[{(time.monotonic() - started) / 60:5.1f} min] {message}", flush=True)

    model = cls.fit(corpus, options, progress=progress)
    test = perplexity(model, tokenize(paths["test"].read_text(), pretokenized=True))
    valid = perplexity(model, tokenize(paths["valid"].read_text(), pretokenized=True))
    quantized = model.quantized()
    test_int8 = perplexity(quantized, tokenize(paths["test"].read_text(), pretokenized=True))
    latency = {name: next_word_latency(m, paths["test"]) for name, m in (("float64", model), ("int8", quantized))}
    if args.save:
        from engine.store import ModelStore

        store = ModelStore()
        store.save(args.save, model, corpus=corpus.summary)
        store.save(f"{args.save}-int8", quantized, corpus=corpus.summary)
        sizes = {n: sum(f.stat().st_size for f in store.path(n).iterdir()) for n in (args.save, f"{args.save}-int8")}
        print(f"saved {args.save} ({sizes[args.save] / 1e6:.1f} MB) and {args.save}-int8 ({sizes[args.save + '-int8'] / 1e6:.1f} MB)")
    print(f"machine: {os.cpu_count()} cores, CPU only; backend {args.backend}, options {values}")
    print(f"parameters {model.facts.get('parameters'):,}; epochs run {model.facts.get('epochs_run')}; "
          f"training {model.facts.get('training_minutes', 0):.1f} min")
    for row in model.metrics:
        print(f"  epoch {row['epoch']:2d}: {row['minutes']:5.1f} min, valid ppl {row['valid_perplexity']:7.2f}, "
              f"train tokens/s {row['tokens_per_s']:,.0f}, clipped {row['clipped_share']:.0%}, lr {row['lr']:g}")
    print(f"valid perplexity {valid.perplexity:.2f}; test perplexity {test.perplexity:.2f} (KN5: 141.2)")
    print(f"int8 copy (foretell models optimize): test perplexity {test_int8.perplexity:.2f} "
          f"({100 * (test_int8.perplexity / test.perplexity - 1):+.2f} %)")
    for name, lat in latency.items():
        print(f"next word after one typed word (advance + top-10), one thread, {name}: p50 {1000 * np.percentile(lat, 50):.2f} ms, "
              f"p99 {1000 * np.percentile(lat, 99):.2f} ms")


def next_word_latency(model, test_path, sentences=300):
    """Seconds per typed word: one step of the incremental state and the top-10 after it."""
    from engine.complete import top_completions
    from engine.scoring import encode
    from engine.tokenizer import tokenize
    from engine.vocab import BOS_ID

    ids = encode(model, tokenize(test_path.read_text(), pretokenized=True)[:sentences])
    latencies = []
    state = model.initial_state()
    for token in ids[1:]:
        if token == BOS_ID:
            continue
        t0 = time.perf_counter()
        top_completions(model, model.next_logprobs(state), "", 10)
        state = model.advance(state, int(token))
        latencies.append(time.perf_counter() - t0)
    return latencies


if __name__ == "__main__":
    main()
