"""Where `foretell predict`'s start-up goes, phase by phase, for one or more checkouts alternated.

    FORETELL_HOME=DIR python bench/startup_phases.py MODEL CHECKOUT [CHECKOUT...]

Each run is a fresh process with the checkout first on its path, timing: importing numpy (the
floor under every command), importing the CLI, loading MODEL, and one next-word prediction.
Prints the best and the median of 15 runs of each. Python's bytecode cache is used as a user's
Python uses it (a sandbox's PYTHONDONTWRITEBYTECODE is dropped; one run first writes it).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

PHASES = """
import sys, time
t0 = time.perf_counter()
import numpy
t1 = time.perf_counter()
import engine.cli
from engine.cli.common import load_model
from engine.complete import predict
t2 = time.perf_counter()
model = load_model(sys.argv[1])
t3 = time.perf_counter()
predict(model, "the ", 10)
t4 = time.perf_counter()
print(*(1000 * (b - a) for a, b in ((t0, t1), (t1, t2), (t2, t3), (t3, t4))))
"""
NAMES = ("numpy", "CLI imports", "load", "predict")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    model, checkouts = sys.argv[1], sys.argv[2:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    runs = {c: [] for c in checkouts}
    for attempt in range(16):
        for checkout in checkouts:
            out = subprocess.run([sys.executable, "-c", PHASES, model], cwd=checkout, env={**env, "PYTHONPATH": checkout},
                                 capture_output=True, text=True, check=True).stdout
            if attempt:  # the first writes the bytecode cache
                runs[checkout].append([float(x) for x in out.split()])
    for checkout, rows in runs.items():
        columns = list(zip(*rows))
        best = [min(c) for c in columns]
        print(checkout + ": " + ", ".join(f"{n} {min(c):.0f} (median {statistics.median(c):.0f})" for n, c in zip(NAMES, columns))
              + f"; sum of the best {sum(best):.0f} ms")


if __name__ == "__main__":
    main()
