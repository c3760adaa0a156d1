"""Atlas jobs: lifecycle, cancellation, persistence across a restart, the HTTP routes and the CLI function."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.api.routes import ROUTERS
from headscope.api.routes import jobs as job_routes
from headscope.engine.atlas import runner
from headscope.engine.atlas.common import JobCancelled
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.atlas.similarity import HOW_TO_GIVE_BASE
from headscope.engine.atlas.sweeps import single_head_sweep
from headscope.engine.engine import Engine
from headscope.engine.errors import InputError, TaskError
from headscope.engine.store import ResultStore
from headscope.settings import Settings

from tests.conftest import make_task


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
        while not self.release.is_set():
            if cancelled():
                raise JobCancelled("cancelled")
            time.sleep(0.01)
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
    time.sleep(0.1)
    assert gate.calls == 1, "a cancelled queued job must never start"
    assert manager.cancel("0" * 16) is None
    # submitting a cancelled job again runs it afresh
    gate.release.set()
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


# -- HTTP ---------------------------------------------------------------------------------------------
@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    assert job_routes.router in ROUTERS
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as test_client:
        yield test_client


def poll(client: TestClient, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/jobs/{job_id}").json()
        if body["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_http_job_lifecycle_matches_the_contract(client: TestClient, engine: Engine) -> None:
    created = client.post("/api/jobs", json={"kind": "layer", "mode": "uniform", "split": None, "limit": 15})
    assert created.status_code == 202
    job_id = created.json()["id"]
    body = poll(client, job_id)
    assert body["state"] == "done" and body["progress"] == 1.0 and body["error"] is None
    result = body["result"]
    assert (result["metric"], result["mode"], result["n"]) == ("accuracy", "uniform", 15)
    fresh = engine.evaluate([[1, h] for h in range(4)], "uniform", "dev", 15, use_store=False)
    assert result["delta"][1] == pytest.approx(fresh.delta)
    listed = client.get("/api/jobs").json()["jobs"]
    assert [j["id"] for j in listed] == [job_id] and listed[0]["result"] is None
    assert client.post("/api/jobs", json={"kind": "layer", "mode": "uniform", "limit": 15}).json()["id"] == job_id
    assert client.delete(f"/api/jobs/{job_id}").json()["state"] == "done"  # finished jobs stay finished


def test_http_patterns_and_stats_results_have_the_contract_shape(client: TestClient) -> None:
    for kind, fields in (("stats", {"entropy", "to_cls", "to_sep", "to_punct", "to_self", "to_prev", "to_next",
                                    "confidence", "labels"}),
                         ("patterns", {"counts"})):
        job_id = client.post("/api/jobs", json={"kind": kind, "limit": 5}).json()["id"]
        result = poll(client, job_id)["result"]
        assert result["n"] == 5 and len(result["heads"]) == 12
        assert fields <= set(result["heads"][0]) and {"layer", "head"} <= set(result["heads"][0])
        if kind == "patterns":
            assert all(sum(h["counts"].values()) == 5 for h in result["heads"])


@pytest.mark.parametrize(("body", "words"), [
    ({"kind": "everything"}, ["kind", "single-head"]),
    ({"kind": "layer", "mode": "half"}, ["mode", "uniform"]),
    ({"kind": "layer", "split": "validation"}, ["validation", "dev, train"]),
    ({"kind": "layer", "limit": 0}, ["limit", "greater than or equal to 1"]),
    ({"kind": "greedy", "max_heads": 99}, ["max_heads", "1 to 12"]),
    ({"kind": "layer", "path": "/etc"}, ["path", "unknown field"]),
])
def test_http_bad_requests_are_422s_naming_the_problem(client: TestClient, body: dict, words: list[str]) -> None:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    text = json.dumps(response.json())
    for word in words:
        assert word in text


def test_http_unknown_job_is_a_json_404(client: TestClient) -> None:
    for response in (client.get("/api/jobs/0123456789abcdef"), client.delete("/api/jobs/nope")):
        assert response.status_code == 404
        assert "no job with id" in response.json()["detail"]


# -- the CLI function ---------------------------------------------------------------------------------
def test_sweep_writes_json_and_csv_and_stores_the_job(tiny_model_dir: Path, tmp_path: Path) -> None:
    from headscope.engine.atlas.cli import sweep

    task_file = tmp_path / "task.csv"
    with task_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for example in make_task(dev=16, train=0).select("dev", None):
            writer.writerow([example.text, "positive" if example.label else "negative"])
    settings = Settings(model=str(tiny_model_dir), task=str(task_file), cache_dir=tmp_path / "cache", max_tokens=48)
    result = sweep("single-head", "zero", None, None, tmp_path / "out.json", settings)
    written = json.loads((tmp_path / "out.json").read_text())
    assert written == result and written["n"] == 16 and len(written["delta"]) == 3
    sweep("single-head", "zero", None, None, tmp_path / "out.csv", settings)
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 12 and float(rows[5]["delta"]) == pytest.approx(written["delta"][1][1])
    # a server on the same cache finds the result stored under the API's job id
    from headscope.engine.workspace import build_engine

    manager = JobManager(build_engine(settings))
    job = manager.get(manager.job_id(runner.normalise_params(manager.engine, "single-head", "zero", None, None)))
    assert job is not None and job.state == "done" and job.result == written


# -- the atlas page's views of real results -------------------------------------------------------------
def test_atlas_views_show_the_job_numbers_and_link_heads_by_integers(manager: JobManager) -> None:
    from headscope.app import atlas

    sweep = manager.wait(manager.submit("single-head", "zero", "dev", 10).id, timeout=120).result
    grid, title = atlas.head_grid("single-head", sweep, "entropy", "vertical")
    np.testing.assert_allclose(grid, sweep["delta"], rtol=1e-6)
    assert title == "delta"
    rows = atlas.table_rows("single-head", sweep, "/")
    assert rows[5]["head"] == "[L1H1](/?layer=1&head=1)" and rows[5]["delta"] == pytest.approx(
        sweep["delta"][1][1], abs=1e-5)
    stats = manager.wait(manager.submit("stats", None, "dev", 4).id, timeout=60).result
    grid, _ = atlas.head_grid("stats", stats, "to_cls", "vertical")
    assert grid[2, 3] == pytest.approx(stats["heads"][2 * 4 + 3]["to_cls"])
    patterns = manager.wait(manager.submit("patterns", None, "dev", 4).id, timeout=60).result
    grid, _ = atlas.head_grid("patterns", patterns, "entropy", "heterogeneous")
    assert grid[0, 0] == pytest.approx(patterns["heads"][0]["counts"]["heterogeneous"] / 4)
    assert atlas.chart_figure("patterns", patterns) is not None
    assert atlas.inspector_href("/", 3, 7) == "/?layer=3&head=7"


# -- pre-trained vs fine-tuned ------------------------------------------------------------------------
def test_similarity_is_one_against_itself_and_lower_against_another_base(engine: Engine, tiny_model_dir: Path,
                                                                        tmp_path: Path) -> None:
    from headscope.engine.atlas.similarity import attention_similarity

    from tests.conftest import build_model_dir

    same = attention_similarity(engine, str(tiny_model_dir), "dev", 8)
    np.testing.assert_allclose(same["similarity"], 1.0, atol=1e-6)
    other = build_model_dir(tmp_path / "other", seed=3, train_steps=5)
    different = np.array(attention_similarity(engine, str(other), "dev", 8)["similarity"])
    assert different.shape == (3, 4) and (different < 0.999).all() and (different > 0).all()
    assert same["base_model"] == tiny_model_dir.name  # a name, never a server path


def test_similarity_refuses_pickled_or_mismatched_bases(engine: Engine, tmp_path: Path) -> None:
    from headscope.engine.atlas.similarity import attention_similarity
    from headscope.engine.errors import ModelLoadError

    from tests.conftest import build_model_dir

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="safetensors"):
        attention_similarity(engine, str(pickled), "dev", 4)
    wider = build_model_dir(tmp_path / "wider", train_steps=1, num_attention_heads=8)
    with pytest.raises(InputError, match="8 heads"):
        attention_similarity(engine, str(wider), "dev", 4)
    manager = JobManager(engine, base_model=str(wider))
    job = manager.wait(manager.submit("similarity", None, "dev", 4).id, timeout=60)
    assert job.state == "failed" and "cannot be compared" in job.error
    manager.close()
