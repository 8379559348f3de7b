"""Both cores for the slow, independent parts of training (reading files and their pieces):
a pool of two forked processes where that is safe, the work in this process otherwise."""

from __future__ import annotations

import os
import sys
import threading
from itertools import chain, islice
from typing import Callable, Iterable, Iterator

_shared: object = None  # what the jobs read, handed to the forked workers without pickling
_in_worker = False  # set in ordered_map's forked workers, whose twin has the other core


def two_cores() -> bool:
    """Whether work may go to two forked processes: two cores, and a process with one thread
    (a lock another thread holds would stay held in the child: the language server works in
    turn) and without torch (whose threads do not survive a fork)."""
    import multiprocessing  # (here: most commands never fork, and it costs every start-up 10 ms)

    return cores() >= 2 and "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1 and "torch" not in sys.modules


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def spare_core() -> bool:
    """Whether a second thread would have a core to itself: two cores, and not in one of
    ``ordered_map``'s two workers (ranking a batch on two threads there, beside the twin doing
    the same, took a third more time than each worker on one thread)."""
    return cores() >= 2 and not _in_worker


def map_on_two_threads(function: Callable, items: list) -> list:
    """``[function(item) for item in items]``, the items shared by two threads where there is
    ``spare_core()``: for numpy work, which lets go of the interpreter in its sorts and searches."""
    if len(items) < 2 or not spare_core():
        return [function(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2, thread_name_prefix="foretell-numpy") as pool:
        return list(pool.map(function, items))


def ordered_map(function: Callable, jobs: Iterable, shared: object = None, ahead: int = 2, jobs_per_worker: int | None = None) -> Iterator:
    """``function(shared, job)`` for each job, results in the jobs' order: on two forked
    processes where ``two_cores()`` and there are two jobs or more (``function`` must be a
    module-level function), else here, one after another. At most ``ahead`` results wait for
    the caller, so memory follows the caller's pace, not the number of jobs; with
    ``jobs_per_worker``, a worker is replaced by a fresh fork after that many (what the
    allocator keeps of freed memory goes with it)."""
    global _shared
    jobs = iter(jobs)
    head = list(islice(jobs, 2))
    if len(head) < 2 or not two_cores():
        for job in chain(head, jobs):
            yield function(shared, job)
        return
    import multiprocessing
    from collections import deque

    _shared = shared
    try:
        with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=jobs_per_worker) as pool:
            pending: deque = deque()
            for job in chain(head, jobs):
                pending.append(pool.apply_async(_run, ((function, job),)))
                if len(pending) > ahead:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()
    finally:
        _shared = None


def thread_map(function: Callable, jobs: Iterable, shared: object = None, ahead: int = 2) -> Iterator:
    """``function(shared, job)`` for each job, results in the jobs' order, on one other thread
    while this one makes the next jobs and takes the last results: for work that lets go of
    the interpreter and uses both cores itself. At most ``ahead`` results wait for the caller."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="foretell-ahead") as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(function, shared, job))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _run(task):
    global _in_worker
    _in_worker = True
    function, job = task
    return function(_shared, job)
