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


PERPLEXITY_APART = """
import random
import engine.scoring as scoring
from engine.corpus import corpus_from_text
from engine.parallel import ordered_map, two_cores
from engine.scoring import Perplexity, _perplexity_batch, encode_lines, id_batches, perplexity_of_ids
from plugins.ngram.model import NgramModel, NgramOptions

shared_out = []
scoring.ordered_map = lambda *args, **kwargs: shared_out.append(args[0]) or ordered_map(*args, **kwargs)

rng = random.Random(7)
words = "the cat dog sat on a mat and ran far away from home".split()
text = "".join(" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) + "\\n" for _ in range(400))
model = NgramModel.fit(corpus_from_text(text, pretokenized=True), NgramOptions(order=3))
held = text[: len(text) // 2] + "an unseen word\\n"
batches = list(id_batches([encode_lines(model.vocab, held)], max_tokens=200))
assert two_cores() and len(batches) > 4
in_turn = Perplexity()
for batch in batches:
    in_turn.add(_perplexity_batch(model, batch))
apart = perplexity_of_ids(model, iter(batches))
assert apart == in_turn and in_turn.oov == 3 and shared_out == [_perplexity_batch], (apart, in_turn, shared_out)
print("ok")
"""


@pytest.mark.skipif(cores() < 2, reason="work is shared out only where there are two cores")
def test_perplexity_of_many_batches_scored_on_two_processes_equals_scoring_them_in_turn():
    done = subprocess.run([sys.executable, "-c", PERPLEXITY_APART], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
