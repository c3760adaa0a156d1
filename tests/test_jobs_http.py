"""The job routes (docs/api.md, "Jobs") in process: lifecycle, result shapes, 422s and 404s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.engine.engine import Engine
from headscope.settings import Settings


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as test_client:
        yield test_client


def poll(client: TestClient, job_id: str, timeout: float = 120) -> dict:
    """The job's body once it has finished (waiting on the app's own job manager, not by polling HTTP)."""
    client.app.state.jobs.wait(job_id, timeout=timeout)
    return client.get(f"/api/jobs/{job_id}").json()


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


def test_kinds_say_which_take_a_mode_and_which_parameters(client: TestClient) -> None:
    from headscope.engine.atlas.patterns import PATTERN_TYPES

    body = client.get("/api/jobs/kinds").json()
    kinds = {k["kind"]: k for k in body["kinds"]}
    assert kinds["single-head"]["uses_mode"] and not kinds["stats"]["uses_mode"]
    assert [p["name"] for p in kinds["greedy"]["params"]] == ["max_heads"]
    assert kinds["stats"]["params"][0] | {"description": ""} == {
        "name": "word_level", "type": "boolean", "default": False, "description": "", "choices": []}
    assert body["pattern_types"] == list(PATTERN_TYPES) and "entropy" in body["statistics"]
    # every kind listed is one POST /api/jobs accepts, and nothing else is
    assert client.post("/api/jobs/lookup", json={"kind": "nothing"}).status_code == 422
    for kind in kinds:
        assert client.post("/api/jobs/lookup", json={"kind": kind, "limit": 2}).status_code == 200


def test_lookup_names_the_job_a_request_would_start_without_starting_it(client: TestClient) -> None:
    request = {"kind": "stats", "mode": "uniform", "limit": 3}
    before = client.post("/api/jobs/lookup", json=request).json()
    assert before["job"] is None and before["params"]["mode"] is None  # stats ignores the mode
    assert client.get("/api/jobs").json()["jobs"] == []
    job_id = client.post("/api/jobs", json={"kind": "stats", "limit": 3}).json()["id"]
    assert job_id == before["id"]  # the same job whatever mode was sent
    poll(client, job_id)
    after = client.post("/api/jobs/lookup", json=request).json()
    assert after["job"]["state"] == "done" and after["job"]["result"] is None and after["id"] == job_id
    other = client.post("/api/jobs/lookup", json={"kind": "stats", "limit": 3, "word_level": True}).json()
    assert other["id"] != job_id and other["job"] is None
