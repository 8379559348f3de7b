"""Two lanes for model work, so that typing never waits for surprisal analysis.

The interactive lane (one thread) runs what the user is waiting for as they type: completion,
inline completion and hover. The background lane (one thread) runs analyses one bounded step at
a time, round robin with its other jobs; before every step it waits while interactive work is
pending, and a job whose result is no longer wanted stops at its next step. Neither thread ever
runs on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import sys
import threading
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

# A thread waiting for the GIL gets it after this long (Python's default is 5 ms): an
# interactive request does not sit behind a long step of pure-Python analysis.
SWITCH_INTERVAL = 0.0001


@dataclass
class _Job:
    steps: Generator[None, None, Any]
    stop: Callable[[], bool]
    stopped: Callable[[], Any]
    future: Future = field(default_factory=Future)


class Lanes:
    def __init__(self):
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._interactive = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foretell-interactive")
        self._pending = 0  # interactive calls submitted and not finished
        self._idle = threading.Condition()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        threading.Thread(target=self._run_background, name="foretell-analysis", daemon=True).start()

    def close(self) -> None:
        """Stop both lanes (a TCP session ended): queued work is dropped, threads end."""
        with self._wake:
            self._closed = True
            for job in self._jobs:
                job.future.cancel()
            self._jobs.clear()
            self._wake.notify_all()
        self._interactive.shutdown(wait=False, cancel_futures=True)

    # -- interactive -------------------------------------------------------------------------
    async def interactive(self, fn, *args):
        """Run ``fn(*args)`` on the interactive lane; background steps wait meanwhile."""
        with self._idle:
            self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._interactive, functools.partial(fn, *args))
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    # -- background --------------------------------------------------------------------------
    def background_steps(self, steps: Generator[None, None, Any], stop: Callable[[], bool] = lambda: False, stopped: Callable[[], Any] = lambda: None) -> Future:
        """Run the generator ``steps`` a step at a time; the future gets what it returns or,
        once ``stop()`` (asked before each step) says it is no longer wanted, ``stopped()``."""
        job = _Job(steps, stop, stopped)
        with self._wake:
            self._jobs.append(job)
            self._wake.notify()
        return job.future

    async def background(self, fn, *args):
        """Run ``fn(*args)`` on the background lane as one step."""

        def one_step():
            return fn(*args)
            yield  # (makes this a generator: its one step runs fn)

        return await asyncio.wrap_future(self.background_steps(one_step()))

    def _run_background(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._jobs.popleft()
            with self._idle:
                while self._pending:
                    self._idle.wait()
            if job.future.cancelled():
                continue
            try:
                if not job.stop():
                    next(job.steps)
                    with self._wake:
                        self._jobs.append(job)
                    continue
                outcome = job.stopped()
            except StopIteration as finished:
                outcome = finished.value
            except BaseException as exc:  # handed to whoever awaits the job
                _settle(job.future, exception=exc)
                continue
            _settle(job.future, result=outcome)


def _settle(future: Future, result=None, exception=None) -> None:
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled meanwhile: nobody is waiting
        pass
