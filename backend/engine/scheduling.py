"""How model work is queued: a small scheduler interface, and long work cut into chunks sized by time.

The engine never decides on its own when a forward pass runs: it hands each piece of model work to
``engine.scheduler.schedule(call, priority)``. The default, :data:`DIRECT`, runs it at once (the CLI and
the Python API, one caller). The HTTP API plugs in its gate (``headscope.api.limits.ModelGate``), one
queue for every model call of the server, where interactive calls go ahead of batch work.

Long work (a split's preparation, a full-split evaluation, a sweep, a job) is cut by :func:`run_chunked`
into chunks that each take about :data:`CHUNK_SECONDS`, each submitted on its own at batch priority, so
an interactive call waits at most for the chunk in progress, whatever the model's size: the chunk size
follows the measured time per unit of work, not a count. The units are small enough for that at any size:
one layer of one batch's forward pass (:func:`headscope.engine.evaluation.run_by_layer`; a whole pass of a
BERT-large batch at 512 tokens is seconds on a CPU). Cancellation is checked before every chunk,
and progress is reported after each in units of work (so time left stays right when units differ).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Protocol, TypeVar

T = TypeVar("T")
Progress = Callable[[float], None]  # share done, 0..1
Cancelled = Callable[[], bool]

CHUNK_SECONDS = 0.2  # target duration of one chunk of batch work: what an interactive call may wait for
SMOOTHING = 0.5  # weight of the newest chunk in the running estimate of seconds per unit of work


class Priority(IntEnum):
    """Queue order: an interactive call (one input's attention, a page of examples) goes ahead of every
    queued chunk of batch work (evaluations of a split, jobs)."""

    INTERACTIVE = 0
    BATCH = 1


class Scheduler(Protocol):
    def schedule(self, call: Callable[[], T], priority: Priority = Priority.INTERACTIVE) -> T:
        """Run `call` when its turn comes (blocking) and return its result."""
        ...


class DirectScheduler:
    """Runs every call at once, in the caller's thread: one user, nothing to queue behind."""

    def schedule(self, call: Callable[[], T], priority: Priority = Priority.INTERACTIVE) -> T:
        return call()


DIRECT = DirectScheduler()


class JobCancelled(Exception):
    """Raised before a chunk when the caller asked to stop."""


def no_progress(_: float) -> None:
    """Progress sink for callers that do not show any."""


def never_cancelled() -> bool:
    return False


def check_cancelled(cancelled: Cancelled) -> None:
    if cancelled():
        raise JobCancelled("cancelled")


def run_chunked(scheduler: Scheduler, weights: Sequence[float], work: Callable[[int, int], None], *,
                priority: Priority = Priority.BATCH, budget_s: float = CHUNK_SECONDS,
                progress: Progress = no_progress, cancelled: Cancelled = never_cancelled,
                clock: Callable[[], float] = time.perf_counter) -> None:
    """Run ``work(start, stop)`` over units ``0..len(weights)`` in chunks submitted one by one.

    `weights` is each unit's relative cost (e.g. rows x tokens x layers of a forward pass). The first
    chunk is one unit; each next chunk takes as many units as the measured seconds per weight say fit in
    `budget_s` (at least one unit). Cancellation is checked before each chunk; `progress` gets the
    share of the total weight done after each.
    """
    total = float(sum(weights)) or 1.0
    seconds_per_weight: float | None = None
    done = 0.0
    start = 0
    while start < len(weights):
        check_cancelled(cancelled)
        stop, chunk_weight = start, 0.0
        allowance = budget_s / seconds_per_weight if seconds_per_weight else 0.0
        while stop < len(weights) and (stop == start or chunk_weight + weights[stop] <= allowance):
            chunk_weight += weights[stop]
            stop += 1

        def timed(start: int = start, stop: int = stop) -> float:
            began = clock()
            work(start, stop)
            return clock() - began

        seconds = scheduler.schedule(timed, priority)
        if chunk_weight > 0:
            measured = seconds / chunk_weight
            seconds_per_weight = measured if seconds_per_weight is None else \
                SMOOTHING * measured + (1 - SMOOTHING) * seconds_per_weight
        done += chunk_weight
        start = stop
        progress(min(1.0, done / total))
