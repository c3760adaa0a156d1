"""One scheduler, interactive first: chunks sized by time, the gate's order, cancellation within one chunk.
Orderings are proven with events and the gate's own queue, never with sleeps or elapsed-time limits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from headscope.api.limits import ModelGate
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.engine import Engine
from headscope.engine.model import LoadedModel
from headscope.engine.scheduling import DIRECT, JobCancelled, Priority, run_chunked
from headscope.engine.store import ResultStore

from tests.helpers import make_task


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chunk_sizes(weights: list[float], seconds_per_weight: float, budget_s: float = 0.2) -> list[int]:
    clock, sizes = FakeClock(), []

    def work(start: int, stop: int) -> None:
        sizes.append(stop - start)
        clock.now += seconds_per_weight * sum(weights[start:stop])

    run_chunked(DIRECT, weights, work, budget_s=budget_s, clock=clock)
    assert sum(sizes) == len(weights)
    return sizes


def test_chunks_are_sized_by_time_not_count() -> None:
    """The same budget gives 20 light units or 2 heavy ones per chunk: a chunk lasts about the budget on a
    small model and on a large one alike."""
    assert chunk_sizes([1.0] * 61, seconds_per_weight=0.01) == [1, 20, 20, 20]
    assert chunk_sizes([1.0] * 7, seconds_per_weight=0.1) == [1, 2, 2, 2]
    assert chunk_sizes([1.0] * 4, seconds_per_weight=1.0) == [1, 1, 1, 1]  # never less than one unit
    assert chunk_sizes([1.0] * 5 + [4.0] * 5, seconds_per_weight=0.01) == [1, 8, 1]  # 20 weight a chunk, not 20 units


def test_cancel_takes_effect_before_the_next_chunk_and_progress_counts_weight() -> None:
    done: list[tuple[int, int]] = []
    seen: list[float] = []
    stop = threading.Event()

    def work(start: int, end: int) -> None:
        done.append((start, end))
        if len(done) == 2:
            stop.set()  # cancelled while the second chunk runs

    with pytest.raises(JobCancelled):
        run_chunked(DIRECT, [1.0, 3.0, 1.0, 1.0], work, budget_s=0.0, progress=seen.append, cancelled=stop.is_set)
    assert done == [(0, 1), (1, 2)]
    assert seen == [pytest.approx(1 / 6), pytest.approx(4 / 6)]


def hold(gate: ModelGate) -> tuple[threading.Thread, threading.Event]:
    """A call that holds the gate until released (the chunk in progress)."""
    release, holding = threading.Event(), threading.Event()

    def blocker() -> None:
        holding.set()
        assert release.wait(60)

    thread = threading.Thread(target=gate.schedule, args=(blocker, Priority.BATCH))
    thread.start()
    assert holding.wait(60)
    return thread, release


def queue_call(gate: ModelGate, name: str, priority: Priority, order: list[str]) -> threading.Thread:
    thread = threading.Thread(target=gate.schedule, args=(lambda: order.append(name), priority))
    thread.start()
    return thread


def test_gate_serves_interactive_calls_before_queued_batch_chunks() -> None:
    gate = ModelGate(queue_size=8)
    order: list[str] = []
    holder, release = hold(gate)
    threads = [queue_call(gate, "batch-1", Priority.BATCH, order)]
    assert gate.wait_until(lambda g: g.waiting == 1, timeout=60)
    threads.append(queue_call(gate, "batch-2", Priority.BATCH, order))
    assert gate.wait_until(lambda g: g.waiting == 2, timeout=60)
    threads.append(queue_call(gate, "interactive", Priority.INTERACTIVE, order))
    assert gate.wait_until(lambda g: g.waiting == 3, timeout=60)
    assert (gate.running, order) == (1, [])
    release.set()
    for thread in [holder, *threads]:
        thread.join(60)
    assert order == ["interactive", "batch-1", "batch-2"]
    assert (gate.running, gate.waiting) == (0, 0)
    assert gate.schedule(lambda: gate.schedule(lambda: "inline")) == "inline"  # a holder's own work runs inline


class RecordingGate(ModelGate):
    """The real gate, noting the priority of every call as it starts."""

    def __init__(self) -> None:
        super().__init__(queue_size=16)
        self.started: list[Priority] = []

    def schedule(self, call: Callable, priority: Priority = Priority.INTERACTIVE):
        def noted():
            self.started.append(priority)
            return call()

        return super().schedule(noted, priority)


def test_an_interactive_call_waits_for_one_chunk_of_a_running_sweep_and_cancel_stops_it(
        tiny_model: LoadedModel, tmp_path: Path) -> None:
    gate = RecordingGate()
    engine = Engine(tiny_model, make_task(dev=400), ResultStore(tmp_path / "r.sqlite"), batch_size=8,
                    scheduler=gate)
    engine.prepared("dev", None)
    jobs = JobManager(engine)
    try:
        holder, release = hold(gate)  # the sweep's chunk in progress
        job = jobs.submit("single-head", "zero", "dev", None)
        assert gate.wait_until(lambda g: g.waiting == 1, timeout=60)  # the sweep's next chunk queues
        answer: list = []
        click = threading.Thread(target=lambda: answer.append(engine.attention("the movie was good", None, [])))
        click.start()
        assert gate.wait_until(lambda g: g.waiting == 2, timeout=60)
        before = len(gate.started)
        release.set()
        click.join(60)
        assert answer and answer[0].tokens[0] == "[CLS]"
        assert gate.started[before] == Priority.INTERACTIVE  # right after the chunk in progress
        assert jobs.get(job.id).state == "running"
        chunks_at_cancel = gate.started.count(Priority.BATCH)
        jobs.cancel(job.id)
        assert jobs.wait(job.id, timeout=60).state == "cancelled"
        assert gate.started.count(Priority.BATCH) <= chunks_at_cancel + 1  # at most the chunk then running
        holder.join(60)
    finally:
        jobs.close()
