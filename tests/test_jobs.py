"""The job manager: lifecycle, deterministic ids, cancellation, failures and persistence across a restart.

The HTTP routes are in test_jobs_http.py, `headscope sweep` in test_cli.py, the atlas page in
test_atlas_page.py, the similarity analysis in test_atlas_similarity.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from headscope.engine.atlas import runner
from headscope.engine.atlas.common import JobCancelled
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.atlas.similarity import HOW_TO_GIVE_BASE
from headscope.engine.atlas.sweeps import single_head_sweep
from headscope.engine.engine import Engine
from headscope.engine.errors import InputError, TaskError
from headscope.engine.store import ResultStore

from tests.helpers import make_task


@pytest.fixture
def manager(engine: Engine) -> Iterator[JobManager]:
    jobs = JobManager(engine)
    yield jobs
    jobs.close()


class Gate:
    """A stand-in analysis that runs until the test lets it finish or cancels it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def run(self, engine, kind, params, progress, cancelled, *, base_model=None) -> dict:
        self.calls += 1
        self.started.set()
        progress(0.25)
        while not self.release.wait(0.01):  # the job's cancel flag is only readable, so it is checked each tick
            if cancelled():
                raise JobCancelled("cancelled")
        progress(1.0)
        return {"n": 1, "kind": kind}


def test_job_runs_to_the_same_numbers_as_the_sweep(manager: JobManager, engine: Engine) -> None:
    job = manager.submit("single-head", "zero", "dev", None)
    done = manager.wait(job.id, timeout=120)
    assert done.state == "done" and done.progress == 1.0 and done.eta_s == 0.0 and done.error is None
    expected = single_head_sweep(engine, "zero", "dev", None)
    np.testing.assert_allclose(done.result["delta"], expected["delta"])
    assert np.abs(np.array(expected["delta"])).max() > 0
    assert {"metric", "baseline", "n", "mode", "delta"} <= set(done.result)
    again = manager.submit("single-head", "zero", "dev", None)
    assert again.id == job.id and again.state == "done"


def test_ids_are_deterministic_and_depend_on_every_parameter(manager: JobManager, engine: Engine) -> None:
    params = runner.normalise_params(engine, "layer", "zero", "dev", 10)
    assert manager.job_id(params) == manager.job_id(runner.normalise_params(engine, "layer", "zero", None, 10))
    # a limit at or over the split's size is the whole split: the same job
    whole = runner.normalise_params(engine, "layer", "zero", "dev", None)
    assert manager.job_id(whole) == manager.job_id(runner.normalise_params(engine, "layer", "zero", "dev", 5000))
    others = [runner.normalise_params(engine, "layer", "uniform", "dev", 10),
              runner.normalise_params(engine, "layer", "zero", "train", 10),
              runner.normalise_params(engine, "layer", "zero", "dev", 11),
              runner.normalise_params(engine, "single-head", "zero", "dev", 10)]
    assert len({manager.job_id(p) for p in [params, *others]}) == 5


def test_bad_parameters_name_what_is_allowed(manager: JobManager) -> None:
    with pytest.raises(InputError, match="allowed: single-head, layer"):
        manager.submit("everything")
    with pytest.raises(InputError, match="allowed: zero, uniform, mean"):
        manager.submit("layer", "half")
    with pytest.raises(TaskError, match="this task has: dev, train"):
        manager.submit("layer", "zero", "validation")
    with pytest.raises(InputError, match="at least 1"):
        manager.submit("layer", "zero", "dev", 0)
    with pytest.raises(InputError, match="from 1 to 12"):
        manager.submit("greedy", "zero", "dev", 5, max_heads=13)


def test_cancel_running_and_queued_jobs(manager: JobManager, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate()
    monkeypatch.setattr(runner, "run_job", gate.run)
    running = manager.submit("layer", "zero", "dev", 3)
    assert gate.started.wait(10)
    queued = manager.submit("layer", "zero", "dev", 4)
    assert manager.get(running.id).state == "running" and manager.get(running.id).progress == 0.25
    assert manager.get(running.id).eta_s is not None
    assert manager.get(queued.id).state == "queued"
    assert manager.cancel(queued.id).state == "cancelled"
    manager.cancel(running.id)
    assert manager.wait(running.id, timeout=10).state == "cancelled"
    assert manager.cancel("0" * 16) is None
    # jobs run in order: once a job submitted after the cancelled one is done, that one was passed over
    gate.release.set()
    assert manager.wait(manager.submit("layer", "zero", "dev", 5).id, timeout=10).state == "done"
    assert gate.calls == 2, "a cancelled queued job must never start"
    # submitting a cancelled job again runs it afresh
    assert manager.wait(manager.submit("layer", "zero", "dev", 3).id, timeout=10).state == "done"


def test_a_failing_job_reports_why(manager: JobManager) -> None:
    job = manager.wait(manager.submit("similarity", None, "dev", 4).id, timeout=30)
    assert job.state == "failed" and job.error == HOW_TO_GIVE_BASE and job.result is None


def test_finished_results_survive_a_restart_without_the_model(tiny_model, tiny_task, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.sqlite"
    first = JobManager(Engine(tiny_model, tiny_task, ResultStore(path), batch_size=8))
    job = first.wait(first.submit("stats", None, "dev", 6).id, timeout=60)
    assert job.state == "done" and job.result["n"] == 6
    first.close()
    first.engine.store.close()

    def no_model(*_: object, **__: object) -> None:
        raise AssertionError("the model ran, but the result was stored")

    restarted = Engine(tiny_model, tiny_task, ResultStore(path), batch_size=8)
    monkeypatch.setattr(runner, "run_job", no_model)
    monkeypatch.setattr(restarted, "prepared", no_model)
    monkeypatch.setattr(restarted, "evaluate_many", no_model)
    second = JobManager(restarted)
    fetched = second.get(job.id)
    assert fetched.state == "done" and fetched.stored and fetched.result == job.result
    resubmitted = second.submit("stats", None, "dev", 6)
    assert resubmitted.id == job.id and resubmitted.state == "done" and resubmitted.result == job.result
    assert [j.id for j in second.list()] == [job.id]
    # another task on the same file does not see it
    other = JobManager(Engine(tiny_model, make_task(dev=20, seed=9), ResultStore(path), batch_size=8))
    assert other.get(job.id) is None and other.list() == []
    second.close()
    other.close()
