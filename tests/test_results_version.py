"""Results never outlive the code that made them: entries of another results version are recomputed,
rows that do not read back are misses (never a 5xx), and the version follows the source by itself."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.engine import versions
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.engine import Engine
from headscope.engine.model import LoadedModel
from headscope.engine.store import ResultStore, canonical_key
from headscope.settings import Settings

from tests.helpers import make_task

MASK = [[0, 1], [1, 0], [1, 3], [2, 2]]
LIBRARIES = {"torch": "2.13.0", "numpy": "2.4.6"}


def engine_on(model: LoadedModel, path: Path, version: str | None = None) -> Engine:
    return Engine(model, make_task(), ResultStore(path, version=version), batch_size=8)


def tamper(path: Path, table: str, column: str, value: object) -> None:
    """Overwrite one column of every row, as an old build or a broken disk would have left it."""
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE {table} SET {column} = ?", (value,))


def test_version_follows_the_number_making_source_and_the_libraries(tmp_path: Path) -> None:
    root = tmp_path / "engine"
    shutil.copytree(versions.ENGINE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    original = versions.compute_version(root, LIBRARIES)
    assert original == versions.compute_version(root, dict(reversed(LIBRARIES.items())))
    (root / "store.py").write_text((root / "store.py").read_text() + "\n# plumbing changed\n")
    assert versions.compute_version(root, LIBRARIES) == original
    (root / "metrics.py").write_text((root / "metrics.py").read_text() + "\n# a fix to a metric\n")
    fixed = versions.compute_version(root, LIBRARIES)
    assert fixed != original
    (root / "atlas" / "sweeps.py").write_text((root / "atlas" / "sweeps.py").read_text() + "\n")
    assert versions.compute_version(root, LIBRARIES) != fixed
    assert versions.compute_version(root, {**LIBRARIES, "torch": "2.14.0"}) != versions.compute_version(root, LIBRARIES)
    assert {"torch", "transformers", "numpy", "scikit-learn"} <= set(versions.library_versions())


def test_an_evaluation_of_an_older_version_is_recomputed(tiny_model: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    older = engine_on(tiny_model, path, version="older")
    first = older.evaluate(MASK, "zero")
    assert older.evaluate(MASK, "zero").cached is True
    record = first.model_dump(mode="json", exclude={"cached", "elapsed_ms"})
    tamper(path, "results", "value", json.dumps({**record, "score": 123.0}))  # what the older code made
    assert older.stored_evaluation(MASK, "zero").score == 123.0  # its own version would serve it
    current = engine_on(tiny_model, path)
    again = current.evaluate(MASK, "zero")
    assert again.cached is False and again.score == first.score != 123.0
    assert current.evaluate(MASK, "zero").cached is True
    with sqlite3.connect(path) as db:  # the new row replaced the old one
        assert db.execute("SELECT DISTINCT version FROM results").fetchall() == [(current.store.version,)]


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '{"score": 0.5}', '{"metric": "accuracy"}'])
def test_a_row_that_does_not_parse_is_a_miss(tiny_model: LoadedModel, tmp_path: Path, value: str) -> None:
    path = tmp_path / "results.sqlite"
    engine = engine_on(tiny_model, path)
    first = engine.evaluate(MASK, "uniform", "dev", 20)
    tamper(path, "results", "value", value)
    assert engine.stored_evaluation(MASK, "uniform", "dev", 20) is None
    again = engine.evaluate(MASK, "uniform", "dev", 20)
    assert (again.cached, again.score, again.significance) == (False, first.score, first.significance)


def test_a_corrupted_row_through_http_is_recomputed_not_a_5xx(tiny_model: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    engine = engine_on(tiny_model, path)
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as client:
        request = {"ablate": MASK, "limit": 16}
        first = client.post("/api/evaluate", json=request).json()
        tamper(path, "results", "value", '{"metric": "accuracy", "score": "high"}')
        response = client.post("/api/evaluate", json=request)
        assert response.status_code == 200
        assert response.json()["cached"] is False and response.json()["score"] == first["score"]


def test_job_results_of_an_older_version_or_unreadable_are_not_served(tiny_model: LoadedModel,
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    older = JobManager(engine_on(tiny_model, path, version="older"))
    params = {"kind": "layer", "mode": "zero", "split": "dev", "limit": 8}
    job_id = older.record(params, {"delta": [9.0, 9.0, 9.0], "note": "made by older code"})
    assert older.get(job_id).result["note"] == "made by older code"
    current = JobManager(engine_on(tiny_model, path))
    try:
        assert current.get(job_id) is None and current.list() == []
        job = current.wait(current.submit("layer", "zero", "dev", 8).id)
        assert job.id == job_id and job.state == "done" and "note" not in job.result
        tamper(path, "jobs", "result", "{truncated")
        assert JobManager(current.engine).get(job_id) is None
    finally:
        current.close()


def test_per_head_means_of_an_older_version_or_wrong_shape_are_recomputed(tiny_model: LoadedModel,
                                                                         tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    truth = engine_on(tiny_model, path).head_means().numpy()
    tamper(path, "arrays", "data", np.full_like(truth, 7.0).tobytes())
    tamper(path, "arrays", "version", "older")
    assert np.array_equal(engine_on(tiny_model, path).head_means().numpy(), truth)
    tamper(path, "arrays", "shape", "[2, 2]")
    assert np.array_equal(engine_on(tiny_model, path).head_means().numpy(), truth)


def test_a_store_of_the_old_layout_opens_and_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    with sqlite3.connect(path) as db:  # the layout before results versions
        db.execute("CREATE TABLE results (key TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL, "
                   "value TEXT NOT NULL, created REAL NOT NULL)")
        db.execute("INSERT INTO results VALUES (?, 'evaluate', '{}', '{\"score\": 1}', 0)",
                   (canonical_key({"kind": "evaluate"}),))
    store = ResultStore(path)
    assert store.get({"kind": "evaluate"}) is None
    store.put({"kind": "evaluate"}, {"score": 0.5})
    assert store.get({"kind": "evaluate"}) == {"score": 0.5}
