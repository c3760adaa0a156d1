"""Mean mode's per-head means: stored by `headscope prepare`, computed as the `means` job (progress, cancel,
its own worker), and followed by anyone who asks while another computes them. The dashboard's side
(progress under the score, then the score) is in tests/test_means_e2e.py."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.api.limits import ModelGate
from headscope.cli import app
from headscope.engine.atlas import runner
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.engine import Engine
from headscope.engine.evaluation import head_output_means
from headscope.engine.model import LoadedModel
from headscope.engine.scheduling import JobCancelled
from headscope.engine.store import ResultStore
from headscope.engine.workspace import build_engine
from headscope.settings import Settings
from typer.testing import CliRunner

from tests.helpers import make_task, write_task_file
from tests.test_scheduling import hold


def gated_engine(model: LoadedModel, folder: Path) -> tuple[Engine, ModelGate]:
    """An engine whose model work queues in a gate the test can hold (30 train examples: 4 batches of 8)."""
    gate = ModelGate(queue_size=8)
    engine = Engine(model, make_task(train=30), ResultStore(folder / "results.sqlite"), batch_size=8, scheduler=gate)
    return engine, gate


def test_prepare_stores_the_means_of_the_model_it_would_serve(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`headscope prepare --model M --task T` (the default model's path minus the fine-tuning): the means
    land in the results store, equal to a direct computation, and a second run finds them."""
    task_file = write_task_file(tmp_path / "mine.csv", rows=20)
    args = ["prepare", "--model", str(tiny_model_dir), "--task", str(task_file), "--cache-dir", str(tmp_path / "c")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "per-head means over the 20 dev examples computed in" in first.output
    engine = build_engine(Settings(model=str(tiny_model_dir), task=str(task_file), cache_dir=tmp_path / "c"))
    assert engine.has_head_means()
    direct = head_output_means(engine.model, engine.task.split("dev"), engine.batch_size)
    np.testing.assert_allclose(engine.head_means().numpy(), direct.numpy(), rtol=1e-5, atol=1e-6)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "per-head means over the 20 dev examples already stored" in again.output


def test_means_job_reports_progress_and_stores_what_mean_mode_uses(engine: Engine, tmp_path: Path) -> None:
    params = runner.normalise_params(engine, "means", None)
    assert params["split"] == "train" and params["limit"] is None and params["mode"] is None
    shares: list[float] = []
    result = runner.run_job(engine, "means", params, shares.append)
    assert len(shares) >= 2 and shares == sorted(shares) and 0 < shares[0] < 1 and shares[-1] == 1.0
    assert result["split"] == "train" and result["n"] == 30 and result["head_dim"] == engine.model.head_dim
    direct = head_output_means(engine.model, engine.task.split("train"), engine.batch_size)
    np.testing.assert_allclose(result["norm"], direct.norm(dim=-1).numpy(), rtol=1e-5)
    fresh = Engine(engine.model, engine.task, ResultStore(engine.store.path), batch_size=8)
    assert fresh.has_head_means(), "a fresh engine on the same store must find the job's means"
    assert runner.normalise_params(engine, "means", "uniform", "dev", 10) == params  # one job per model and task


def test_means_job_cancels_within_a_chunk_and_leaves_nothing(tiny_model: LoadedModel, tmp_path: Path) -> None:
    engine, gate = gated_engine(tiny_model, tmp_path)
    jobs = JobManager(engine)
    holder, release = hold(gate)  # the chunk in progress: the job's first chunk queues behind it
    try:
        job = jobs.submit("means", None)
        assert gate.wait_until(lambda g: g.waiting == 1, timeout=60)
        jobs.cancel(job.id)
    finally:
        release.set()
        holder.join(60)
    assert jobs.wait(job.id).state == "cancelled"
    assert not engine.has_head_means()
    again = jobs.submit("means", None)  # a cancelled job can be started again, and then finishes
    assert jobs.wait(again.id).state == "done" and engine.has_head_means()
    jobs.close()


def test_means_job_runs_beside_a_running_job_and_is_followed_by_a_mean_mode_request(
        tiny_model: LoadedModel, tmp_path: Path) -> None:
    """A sweep holding the jobs' worker does not hold up the means job (its first chunk queues beside the
    sweep's); a mean-mode request arriving meanwhile joins that computation and follows its progress, and a
    cancel stops such a wait."""
    engine, gate = gated_engine(tiny_model, tmp_path)
    jobs = JobManager(engine)
    holder, release = hold(gate)
    with ThreadPoolExecutor(2) as pool:
        try:
            sweep = jobs.submit("layer", "zero", "dev", 8)  # takes the jobs' one worker, its chunk queued
            assert gate.wait_until(lambda g: g.waiting == 1, timeout=60)
            job = jobs.submit("means", None)
            assert gate.wait_until(lambda g: g.waiting == 2, timeout=60)  # running beside the sweep
            followed, stop, shares = threading.Event(), threading.Event(), []

            def follow(share: float) -> None:
                shares.append(share)
                followed.set()

            cancelled = pool.submit(engine.head_means, follow, stop.is_set)
            assert followed.wait(60) and shares[0] == 0.0  # following the job's computation, not starting one
            stop.set()
            with pytest.raises(JobCancelled):
                cancelled.result(60)
            joined = pool.submit(engine.head_means)
        finally:
            release.set()
            holder.join(60)
        assert jobs.wait(job.id).state == "done" and jobs.wait(sweep.id).state == "done"
        np.testing.assert_array_equal(joined.result(60).numpy(), engine.head_means().numpy())
    assert gate.waiting == 0 and gate.running == 0
    jobs.close()


def test_a_mean_mode_sweep_reports_the_means_as_the_first_part_of_its_progress(engine: Engine) -> None:
    """Without stored means, a mean-mode job computes them first, reporting their chunks as the first
    MEANS_SHARE of its bar, then runs its own passes over the rest."""
    params = runner.normalise_params(engine, "layer", "mean", "dev", 8)
    seen: list[tuple[float, bool]] = []
    result = runner.run_job(engine, "layer", params, lambda share: seen.append((share, engine.has_head_means())))
    shares = [share for share, _ in seen]
    assert shares == sorted(shares) and shares[-1] == 1.0
    computing = [share for share, known in seen if not known]  # reported while the means were not there yet
    assert len(computing) >= 2 and 0 < computing[0] < runner.MEANS_SHARE
    assert computing[-1] == pytest.approx(runner.MEANS_SHARE)
    assert all(share >= runner.MEANS_SHARE for share, known in seen if known)
    assert result["mode"] == "mean" and len(result["delta"]) == engine.model.num_layers


def test_a_mean_mode_job_cancels_while_computing_the_means(tiny_model: LoadedModel, tmp_path: Path) -> None:
    """The job's first chunk is the means' (another caller asking for them follows that computation and
    queues nothing), and a cancel then stops the job there: no means stored, its bar inside the means' share."""
    engine, gate = gated_engine(tiny_model, tmp_path)
    jobs = JobManager(engine)
    holder, release = hold(gate)
    followed, stop = threading.Event(), threading.Event()
    with ThreadPoolExecutor(1) as pool:
        try:
            job = jobs.submit("single-head", "mean", "dev", 8)
            assert gate.wait_until(lambda g: g.waiting == 1, timeout=60)  # the job's first chunk
            follower = pool.submit(engine.head_means, lambda _share: followed.set(), stop.is_set)
            assert followed.wait(60) and gate.waiting == 1
            stop.set()
            jobs.cancel(job.id)
        finally:
            release.set()
            holder.join(60)
        with pytest.raises(JobCancelled):
            follower.result(60)
    assert jobs.wait(job.id).state == "cancelled"
    assert 0 < job.progress < runner.MEANS_SHARE and not engine.has_head_means()
    jobs.close()


def test_http_offers_the_means_job_over_the_reference_split(engine: Engine, tmp_path: Path) -> None:
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as client:
        kinds = {k["kind"]: k for k in client.get("/api/jobs/kinds").json()["kinds"]}
        assert kinds["means"]["uses_mode"] is False and kinds["means"]["params"] == []
        created = client.post("/api/jobs", json={"kind": "means"}).json()
        same = client.post("/api/jobs/lookup", json={"kind": "means", "split": "dev", "limit": 3}).json()
        assert same["id"] == created["id"] and (same["params"]["split"], same["params"]["limit"]) == ("train", None)
        assert client.app.state.jobs.wait(created["id"]).state == "done"
        body = client.get(f"/api/jobs/{created['id']}").json()
        assert body["result"]["n"] == 30 and len(body["result"]["norm"]) == engine.model.num_layers
        mean = client.post("/api/evaluate", json={"ablate": [[1, 2]], "mode": "mean"}).json()
        assert mean["mode"] == "mean" and mean["n"] == 40

