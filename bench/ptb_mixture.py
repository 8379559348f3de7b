"""Penn Treebank: KN5, a recurrent model and the cache, mixed by EM on the validation set.

    FORETELL_HOME=DIR python bench/neural_ptb.py rnn --minutes 40 -O cell=lstm --save ptb-lstm
    FORETELL_HOME=DIR python bench/ptb_mixture.py --rnn ptb-lstm

Mikolov (2012, PhD thesis, Table 4.1): RNN + KN5 + cache 97.5 test perplexity. This trains the
KN5 (order 5, Kneser-Ney, pretokenized) and the cache (its defaults) on PTB train, takes the
recurrent model NAME that ``neural_ptb.py --save`` left in the store, and reports the test
perplexity of each part, each pair and all three, each mixture's weights fitted by EM on PTB
valid (``foretell mix --fit``'s code), with the training time of the parts. `<unk>` is the word
`<oov>` for every model, as in ``neural_ptb.py`` and ``ngram_ptb.py``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rnn", required=True, metavar="NAME", help="the recurrent model in the store (FORETELL_HOME)")
    parser.add_argument("--order", type=int, default=5)
    args = parser.parse_args()
    from bench.ngram_ptb import prepare
    from engine.corpus import build_corpus
    from engine.plugins import get_backend
    from engine.scoring import encode, perplexity
    from engine.store import ModelStore
    from engine.tokenizer import tokenize

    paths = prepare()
    corpus = build_corpus([str(paths["train"])], pretokenized=True)
    valid = tokenize(paths["valid"].read_text(), pretokenized=True)
    test = tokenize(paths["test"].read_text(), pretokenized=True)
    rnn = ModelStore().load(args.rnn)
    parts = {f"rnn ({args.rnn})": rnn}
    minutes = {f"rnn ({args.rnn})": rnn.facts.get("training_minutes", float("nan"))}
    for backend, options in (("ngram", {"order": args.order}), ("cache", {})):
        cls = get_backend(backend).cls
        started = time.monotonic()
        name = f"KN{args.order}" if backend == "ngram" else "cache"
        parts[name] = cls.fit(corpus, cls.Options(**options))
        minutes[name] = (time.monotonic() - started) / 60
    mix = get_backend("mix").cls
    print("training minutes: " + ", ".join(f"{n} {m:.2f}" for n, m in minutes.items()) + f"; all together {sum(minutes.values()):.1f}")
    print("| models | weights (EM on valid) | valid perplexity | test perplexity |")
    print("|---|---|---|---|")
    for size in (1, 2, 3):
        for names in itertools.combinations(parts, size):
            if size == 1:
                model, weights = parts[names[0]], "1"
            else:
                union = mix.combine([parts[n] for n in names], list(names))
                model, report = union.fitted(encode(union, valid))
                weights = " / ".join(f"{p['weight']:.3f}" for p in report["parts"])
            print(f"| {' + '.join(names)} | {weights} | {perplexity(model, valid).perplexity:.2f} | {perplexity(model, test).perplexity:.2f} |", flush=True)


if __name__ == "__main__":
    main()
