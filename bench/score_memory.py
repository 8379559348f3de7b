"""`foretell score` on a large stream: peak memory and speed, beside KenLM scoring the same text.

The model is the user's default n-gram trained on Python's reST docs (bench/lsp_typing.py's,
kept in --home); the input is those docs repeated to --megabytes on standard input. The peer is
the `kenlm` package (KenLM's query code) loading the same model exported as ARPA and scoring
the same lines as they stream past: it holds the model and one line, which is the floor.

    apt-get install python3.11-doc && pip install -e '.[bench]'
    python bench/score_memory.py --home /tmp/ft-ngram --megabytes 100
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lsp_typing import ensure_model, split_files  # noqa: E402

PEAK = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr)"
# The largest of the processes it forked too (score ranks a long text on two where the model does not
# rank on both cores itself; none otherwise): ru_maxrss, in KB.
FORKED_PEAK = "import resource; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)"
FORETELL = "import sys\nfrom engine.cli import cli\ntry:\n    cli(sys.argv[1:])\nexcept SystemExit:\n    pass\n" + PEAK + "\n" + FORKED_PEAK
KENLM = ("import sys, kenlm\nm = kenlm.Model(sys.argv[1])\nt = 0.0\nfor line in sys.stdin.buffer:\n"
         "    t += sum(p for p, _, _ in m.full_scores(line.decode('utf-8', 'replace')))\nprint(t)\n" + PEAK)


def measured(code: str, args: list[str], text: Path, env: dict, peaks: int = 1) -> tuple[float, list[float]]:
    """(seconds, peaks in MB) of ``python -c code args < text``: the last ``peaks`` numbers
    ``code`` prints on stderr (VmHWM, which exec resets; the forked processes' largest)."""
    started = time.monotonic()
    with open(text, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-c", code, *args], stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=True)
    return time.monotonic() - started, [int(kb) / 1024 for kb in proc.stderr.split()[-peaks:]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp())
    train_files, held_out = split_files()
    ensure_model(home, "ngram", 0, train_files)  # the user's default model
    name = "default"
    env = {**os.environ, "FORETELL_HOME": str(home)}
    with tempfile.TemporaryDirectory() as tmp:
        text, arpa = Path(tmp) / "input.txt", Path(tmp) / "model.arpa"
        docs = "".join(f.read_text(errors="replace") for f in held_out)
        with open(text, "w") as f:
            for _ in range(args.megabytes * 1_000_000 // len(docs) + 1):
                f.write(docs)
        subprocess.run([sys.executable, "-m", "engine", "models", "export", name, str(arpa)], env=env, check=True, capture_output=True)
        size = text.stat().st_size / 1e6
        print(f"machine: {os.cpu_count()} cores; model {name!r} (ngram, Python docs); input {size:.0f} MB of held-out docs on stdin")
        peer_s, (peer_mb,) = measured(KENLM, [str(arpa)], text, env)
        print(f"kenlm (query's code, ARPA loaded)   {peer_s:7.1f} s  peak {peer_mb:6.0f} MB")
        for form in ([], ["--json"]):
            seconds, (mb, forked_mb) = measured(FORETELL, ["score", "--no-color", *form, "-"], text, env, peaks=2)
            forked = f", each ranking process {forked_mb:6.0f} MB" if forked_mb else " (ranked on threads, no other process)"
            print(f"foretell score {' '.join(form) or '(plain)':<8}            {seconds:7.1f} s  peak {mb:6.0f} MB{forked}"
                  f"  | time {seconds / peer_s:.1f}x, memory {mb / peer_mb:.2f}x kenlm's")


if __name__ == "__main__":
    main()
