"""Where `foretell predict`'s start-up goes, phase by phase, for one or more checkouts alternated.

    FORETELL_HOME=DIR python bench/startup_phases.py MODEL CHECKOUT [CHECKOUT...]

Each run is a fresh process with the checkout first on its path, timing: importing the CLI as
`foretell` does (numpy, click and foretell's modules: the CLI chooses how numpy starts), loading
MODEL, and one next-word prediction; and the whole `python -m engine predict -m MODEL "the "`
from process start to exit (wall clock, as a user waits for it). Prints the best and the median
of 15 runs of each. Python's bytecode cache is used as a user's Python uses it (a sandbox's
PYTHONDONTWRITEBYTECODE is dropped; one run first writes it).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

PHASES = """
import sys, time
t0 = time.perf_counter()
import engine.cli
from engine.cli.common import load_model
from engine.complete import predict
t1 = time.perf_counter()
model = load_model(sys.argv[1])
t2 = time.perf_counter()
predict(model, "the ", 10)
t3 = time.perf_counter()
print(*(1000 * (b - a) for a, b in ((t0, t1), (t1, t2), (t2, t3))))
"""
NAMES = ("imports", "load", "predict", "from process start")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    model, checkouts = sys.argv[1], sys.argv[2:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    runs = {c: [] for c in checkouts}
    for attempt in range(16):
        for checkout in checkouts:
            where = {"cwd": checkout, "env": {**env, "PYTHONPATH": checkout}, "capture_output": True, "text": True, "check": True}
            phases = subprocess.run([sys.executable, "-c", PHASES, model], **where).stdout
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "engine", "predict", "-m", model, "the "], **where)
            whole = 1000 * (time.perf_counter() - started)
            if attempt:  # the first writes the bytecode cache
                runs[checkout].append([float(x) for x in phases.split()] + [whole])
    for checkout, rows in runs.items():
        columns = list(zip(*rows))
        print(checkout + ": " + ", ".join(f"{n} {min(c):.0f} (median {statistics.median(c):.0f})" for n, c in zip(NAMES, columns)) + " ms")


if __name__ == "__main__":
    main()
