"""engine.parallel: work on two forked processes, results in order, and what a worker may
assume (its twin has the other core; a fresh fork after ``jobs_per_worker`` jobs)."""

import subprocess
import sys

import pytest

from engine.parallel import cores

IN_WORKERS = """
import os
from engine.parallel import ordered_map, spare_core, two_cores

def job(shared, n):
    return n * shared, os.getpid(), spare_core()

assert two_cores()
plain = list(ordered_map(job, range(12), 3))
fresh = list(ordered_map(job, range(12), 3, jobs_per_worker=1))
assert [r[0] for r in plain] == [r[0] for r in fresh] == [3 * n for n in range(12)]
assert not any(r[2] for r in plain + fresh), "a worker must not split its job onto threads"
assert len({r[1] for r in plain}) <= 2 < len({r[1] for r in fresh}) == 12
assert os.getpid() not in {r[1] for r in plain} and spare_core()
print("ok")
"""


@pytest.mark.skipif(cores() < 2, reason="work is shared out only where there are two cores")
def test_workers_keep_to_one_thread_and_are_replaced_when_asked():
    """(In a fresh interpreter: the test process has threads and torch, and never forks.)"""
    done = subprocess.run([sys.executable, "-c", IN_WORKERS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
