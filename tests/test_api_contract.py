"""The HTTP API against docs/api.md, in process: every endpoint's body, its numbers checked against
the engine and against the model's own forward pass, and every documented error."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.engine import significance
from headscope.engine.engine import Engine
from headscope.engine.interventions import ABLATION_MODES, Intervention, intervene
from headscope.settings import Settings
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.helpers import assert_clear_error

TEXT = "the movie was not very good , but the acting is great !"
PAIR = "a boring plot ."


def make_client(engine: Engine, tmp_path: Path, ui=None, **settings) -> TestClient:
    return TestClient(create_app(Settings(cache_dir=tmp_path, **settings), engine=engine, ui=ui))


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(engine, tmp_path) as test_client:
        yield test_client


def model_forward(engine: Engine, text: str, pair: str | None, ablate: list[list[int]], mode: str):
    """Probabilities and attention from the HF model's own `forward` (not the engine's layer-by-layer path)."""
    encoded = engine.model.tokenizer(text, pair, return_tensors="pt", return_token_type_ids=True)
    disabled = engine.disabled_tensor(ablate)
    means = engine.head_means() if mode == "mean" and ablate else None
    intervention = Intervention(disabled=disabled[None], mode=mode, means=means, capture_weights=True)
    with torch.inference_mode(), intervene(intervention):
        logits = engine.model.model(**encoded).logits
    weights = torch.stack([intervention.weights[layer][0] for layer in range(engine.model.num_layers)])
    return torch.softmax(logits[0], -1).numpy(), weights.numpy()


def values_of(body: dict) -> dict[tuple[int, int], np.ndarray]:
    return {(h["layer"], h["head"]): np.array(h["values"]) for h in body["heads"]}


# -- health and model -----------------------------------------------------------------------------
def test_health_says_ok_and_shows_the_queue(client: TestClient, engine: Engine) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["model"] == Path(engine.model.name).name
    assert (body["running"], body["waiting"]) == (0, 0)
    assert body["queue_size"] >= 16


def test_model_is_the_contract_body_plus_mode_definitions(client: TestClient, engine: Engine) -> None:
    body = client.get("/api/model").json()
    expected = {**engine.describe(), "name": Path(engine.model.name).name}  # a directory, not its server path
    assert {k: body[k] for k in expected} == expected
    assert "/" not in body["name"]  # a local directory is named by its last part, never its server path
    assert (body["num_layers"], body["num_heads"], body["head_dim"]) == (3, 4, 8)
    assert body["task"] == {"name": "tiny", "metric": "accuracy", "splits": {"dev": 40, "train": 30}}
    assert body["dtype"] == "float32" and body["device"] == "cpu"
    assert set(body["ablation_modes"]) == set(ABLATION_MODES)
    assert "1/L" in body["ablation_modes"]["uniform"]
    assert body["limits"]["max_tokens"] == 48


def test_lifespan_loads_the_configured_model_once_with_max_tokens_capped(tiny_model_dir: Path,
                                                                          tmp_path: Path) -> None:
    """No engine handed in: the app builds it from HEADSCOPE_-style settings (a model directory and a task
    file); a max_tokens above the model's 64 positions is reported as 64."""
    task_file = tmp_path / "task.jsonl"
    task_file.write_text("\n".join(json.dumps({"text": t, "label": y})
                                   for t, y in [("good fun", "positive"), ("awful plot", "negative")]))
    settings = Settings(model=str(tiny_model_dir), task=str(task_file), max_tokens=4096, cache_dir=tmp_path)
    with TestClient(create_app(settings)) as test_client:
        body = test_client.get("/api/model").json()
        assert body["max_tokens"] == 64
        assert body["task"]["splits"] == {"dev": 2}
        assert test_client.post("/api/evaluate", json={}).json()["n"] == 2


# -- attention ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ABLATION_MODES)
def test_attention_equals_the_engine_and_the_models_own_forward(client: TestClient, engine: Engine,
                                                                mode: str) -> None:
    ablate = [[1, 2], [0, 3]]
    body = client.post("/api/attention", json={"text": TEXT, "text_pair": PAIR, "ablate": ablate,
                                               "mode": mode}).json()
    direct = engine.attention(TEXT, PAIR, ablate, mode)
    probs, weights = model_forward(engine, TEXT, PAIR, ablate, mode)
    n = len(direct.tokens)
    assert body["tokens"] == direct.tokens
    assert body["tokens"][0] == "[CLS]" and body["tokens"].count("[SEP]") == 2
    first_sep = body["tokens"].index("[SEP]")
    assert body["segments"] == [0] * (first_sep + 1) + [1] * (n - first_sep - 1)
    np.testing.assert_allclose(body["prediction"]["probs"], probs, atol=1e-5)
    assert body["prediction"]["label"] == engine.model.labels[int(np.argmax(probs))]
    assert (body["mode"], body["ablate"]) == (mode, [[0, 3], [1, 2]])
    got = values_of(body)
    assert len(got) == 12
    for (layer, head), values in got.items():
        assert values.shape == (n, n)
        np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=n * 5e-6)
        np.testing.assert_allclose(values, direct.weights[layer, head], atol=5.1e-6)
        np.testing.assert_allclose(values, weights[layer, head], atol=2e-5)


def test_attention_of_a_disabled_head_follows_its_mode(client: TestClient) -> None:
    """Uniform: 1/L on every key. Zero: the head's weights as computed, so layers up to its own are
    exactly the unablated ones, while the layers after it change."""
    plain = values_of(client.post("/api/attention", json={"text": TEXT}).json())
    uniform = values_of(client.post("/api/attention", json={"text": TEXT, "ablate": [[1, 2]],
                                                            "mode": "uniform"}).json())
    zero = values_of(client.post("/api/attention", json={"text": TEXT, "ablate": [[1, 2]]}).json())
    n = plain[0, 0].shape[0]
    np.testing.assert_allclose(uniform[1, 2], np.full((n, n), 1 / n), atol=5e-6)
    for layer in (0, 1):
        for head in range(4):
            np.testing.assert_array_equal(zero[layer, head], plain[layer, head])
    assert max(np.abs(zero[2, h] - plain[2, h]).max() for h in range(4)) > 1e-3


def test_heads_selects_what_is_sent_and_the_forward_is_memoised(client: TestClient, engine: Engine) -> None:
    forwards = []
    hook = engine.model.base.embeddings.register_forward_hook(lambda *_: forwards.append(1))
    try:
        for layer, head in [(2, 3), (0, 1), (1, 0)]:
            body = client.post("/api/attention", json={"text": TEXT, "ablate": [[0, 0]],
                                                       "heads": [[layer, head]]}).json()
            assert [(h["layer"], h["head"]) for h in body["heads"]] == [(layer, head)]
        many = client.post("/api/attention", json={"text": TEXT, "ablate": [[0, 0]],
                                                   "heads": [[1, 1], [0, 2], [1, 1]]}).json()
    finally:
        hook.remove()
    assert len(forwards) == 1
    assert [(h["layer"], h["head"]) for h in many["heads"]] == [(1, 1), (0, 2)]


def test_f16_sends_two_bytes_a_value_of_the_same_matrix(client: TestClient) -> None:
    request = {"text": TEXT, "text_pair": PAIR, "ablate": [[2, 2]], "mode": "mean"}
    as_json = values_of(client.post("/api/attention", json=request).json())
    as_f16 = client.post("/api/attention", json={**request, "format": "f16"}).json()
    n = len(as_f16["tokens"])
    assert len(as_f16["heads"]) == 12
    for head in as_f16["heads"]:
        assert "values" not in head
        raw = base64.b64decode(head["data"], validate=True)
        assert len(raw) == 2 * n * n
        matrix = np.frombuffer(raw, dtype="<f2").reshape(n, n).astype(np.float64)
        np.testing.assert_allclose(matrix, as_json[head["layer"], head["head"]], atol=1e-3)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=n * 1e-3)


@pytest.mark.parametrize(("request_body", "words"), [
    ({"text": ""}, ["text", "at least 1 character"]),
    ({"text": "   "}, ["empty"]),
    ({"text": " ".join(["good"] * 60)}, ["62 tokens", "max_tokens=48"]),
    ({"text": "good", "text_pair": " ".join(["bad"] * 45)}, ["49 tokens", "max_tokens=48"]),
    ({"text": "good", "ablate": [[3, 0]]}, ["L3H0", "0..2", "0..3"]),
    ({"text": "good", "heads": [[0, 4]]}, ["L0H4", "0..3"]),
    ({"text": "good", "ablate": [[-1, 0]]}, ["ablate", "greater than or equal to 0", "-1"]),
    ({"text": "good", "ablate": [[0]]}, ["ablate"]),
    ({"text": "good", "ablate": [["0", 1]]}, ["valid integer", "'0'"]),
    ({"text": "good", "mode": "half"}, ["'zero', 'uniform' or 'mean'", "'half'"]),
    ({"text": "good", "format": "png"}, ["'json', 'f16' or 'thumb'", "'png'"]),
    ({"text": "good", "format": "thumb", "size": 65}, ["size", "less than or equal to 64", "65"]),
    ({"text": "good", "format": "thumb", "size": 7}, ["size", "greater than or equal to 8"]),
    ({"text": "good", "abalte": []}, ["abalte", "unknown field"]),
    ({"text": "x" * 50_001}, ["50000 characters", "50001"]),
    ({"txt": "good"}, ["text", "required"]),
])
def test_attention_rejects_bad_input_naming_limit_and_value(client: TestClient, request_body: dict,
                                                            words: list[str]) -> None:
    assert_clear_error(client.post("/api/attention", json=request_body), 422, *words)


def test_malformed_or_missing_bodies_are_422(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    assert_clear_error(client.post("/api/attention", content=b"{nope", headers=headers), 422, "not valid JSON")
    assert_clear_error(client.post("/api/attention"), 422, "missing")
    assert_clear_error(client.post("/api/evaluate", content=b"[1, 2]", headers=headers), 422, "object")
    assert_clear_error(client.post("/api/attention", content=b'{"text": "\\ud800"}', headers=headers), 422,
                       "text")


# -- evaluate -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ABLATION_MODES)
def test_evaluate_equals_a_direct_engine_evaluation(client: TestClient, engine: Engine, mode: str) -> None:
    ablate = [[0, 1], [1, 0], [1, 3], [2, 2]]
    body = client.post("/api/evaluate", json={"ablate": ablate, "mode": mode, "split": "dev", "limit": 30}).json()
    direct = engine.evaluate(ablate, mode, "dev", 30, use_store=False, use_layer_cache=False)
    for field in ("metric", "score", "baseline", "delta", "n", "flipped", "mode"):
        assert body[field] == getattr(direct, field), field
    predictions = engine.evaluate_many([ablate], mode, "dev", 30)[0]
    baseline = engine.baseline_predictions("dev", 30)
    assert body["flipped"] == np.nonzero(predictions != baseline)[0].tolist()
    assert body["cached"] is False and body["elapsed_ms"] > 0
    assert (body["split"], body["ablate"]) == ("dev", sorted(ablate))
    gold = np.array([e.label for e in engine.task.select("dev", 30)])
    assert body["significance"] == significance.significance("accuracy", gold, baseline, predictions, 2)


def test_evaluate_answers_a_repeated_mask_from_the_store(client: TestClient) -> None:
    request = {"ablate": [[2, 1], [0, 0]], "mode": "uniform"}
    first = client.post("/api/evaluate", json=request).json()
    again = client.post("/api/evaluate", json={**request, "ablate": [[0, 0], [2, 1], [0, 0]]}).json()
    assert first["cached"] is False and again["cached"] is True
    for field in ("score", "baseline", "delta", "n", "flipped", "significance"):
        assert again[field] == first[field]
    sure = first["significance"]
    assert sure["test"] == "mcnemar-exact" and sure["resamples"] == 1000
    assert sure["right_to_wrong"] + sure["wrong_to_right"] <= len(first["flipped"])
    assert sure["ci95"][0] <= first["delta"] <= sure["ci95"][1]
    other_mode = client.post("/api/evaluate", json={**request, "mode": "zero"}).json()
    assert other_mode["cached"] is False


def test_evaluate_defaults_and_limits(client: TestClient, engine: Engine) -> None:
    whole = client.post("/api/evaluate", json={}).json()
    assert (whole["n"], whole["split"], whole["delta"], whole["flipped"]) == (40, "dev", 0.0, [])
    assert whole["score"] == whole["baseline"]
    assert client.post("/api/evaluate", json={"split": None, "limit": 10_000}).json()["n"] == 40
    assert client.post("/api/evaluate", json={"split": "train", "limit": 7}).json()["n"] == 7
    assert_clear_error(client.post("/api/evaluate", json={"split": "validation"}), 422, "'validation'",
                       "dev", "train")
    assert_clear_error(client.post("/api/evaluate", json={"limit": 0}), 422, "limit",
                       "greater than or equal to 1", "0")
    assert_clear_error(client.post("/api/evaluate", json={"limit": 2.5}), 422, "limit", "integer")
    assert_clear_error(client.post("/api/evaluate", json={"ablate": [[0, 9]]}), 422, "L0H9", "0..3")
    assert_clear_error(client.post("/api/evaluate", json={"mode": "random"}), 422, "'random'")


# -- examples -------------------------------------------------------------------------------------
def test_examples_page_carries_gold_and_baseline_predictions(client: TestClient, engine: Engine) -> None:
    labels = engine.model.labels
    dev = engine.task.split("dev")
    predicted = engine.baseline_predictions("dev")
    body = client.get("/api/examples").json()
    assert body["total"] == 40 and [item["id"] for item in body["items"]] == list(range(20))
    page = client.get("/api/examples", params={"offset": 35, "limit": 10}).json()
    assert [item["id"] for item in page["items"]] == [35, 36, 37, 38, 39]
    for item in body["items"] + page["items"]:
        example = dev[item["id"]]
        assert item == {"id": example.id, "text": example.text, "text_pair": None,
                        "label": labels[example.label], "predicted": labels[int(predicted[item["id"]])]}
    train = client.get("/api/examples", params={"split": "train", "offset": 3, "limit": 2}).json()
    assert train["total"] == 30 and [item["text"] for item in train["items"]] == \
        [e.text for e in engine.task.split("train")[3:5]]
    assert client.get("/api/examples", params={"offset": 40}).json() == {"total": 40, "items": []}


def test_examples_rejects_bad_paging(client: TestClient) -> None:
    assert_clear_error(client.get("/api/examples", params={"limit": 1001}), 422, "1000", "1001")
    assert_clear_error(client.get("/api/examples", params={"limit": 0}), 422, "limit")
    assert_clear_error(client.get("/api/examples", params={"offset": -1}), 422, "offset", "-1")
    assert_clear_error(client.get("/api/examples", params={"offset": "two"}), 422, "offset", "'two'")
    assert_clear_error(client.get("/api/examples", params={"split": "test"}), 422, "'test'", "dev")


# -- paths, bodies, origins -----------------------------------------------------------------------
def test_unknown_api_paths_are_json_404_even_with_a_dashboard(engine: Engine, tmp_path: Path) -> None:
    dashboard = Starlette(routes=[Route("/{path:path}", lambda _: HTMLResponse("<html>dashboard</html>"))])
    with make_client(engine, tmp_path, ui=dashboard) as test_client:
        assert test_client.get("/").text == "<html>dashboard</html>"
        assert test_client.get("/assets/app.js").text == "<html>dashboard</html>"
        for path in ("/api/typo", "/api", "/api/model/extra"):
            assert_clear_error(test_client.get(path), 404, path)
        assert_clear_error(test_client.post("/api/model"), 405, "POST", "GET")
        assert test_client.get("/api/health").json()["status"] == "ok"
        assert "/api/attention" in test_client.get("/openapi.json").json()["paths"]
        assert test_client.get("/api/docs").status_code == 200


def test_bodies_over_the_limit_are_413_naming_it(engine: Engine, tmp_path: Path) -> None:
    with make_client(engine, tmp_path, max_body_bytes=2048) as test_client:
        big = json.dumps({"text": "good " * 1000}).encode()
        assert_clear_error(test_client.post("/api/attention", content=big,
                                            headers={"content-type": "application/json"}), 413, "2048",
                           str(len(big)))

        def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"text": "'
            yield b"good " * 1000
            yield b'"}'

        assert_clear_error(test_client.post("/api/attention", content=streamed(),
                                            headers={"content-type": "application/json"}), 413, "2048")
        assert test_client.post("/api/attention", json={"text": "good " * 10}).status_code == 200


def test_cors_only_for_configured_origins(engine: Engine, tmp_path: Path) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with make_client(engine, tmp_path) as closed:
        response = closed.get("/api/health", headers={"Origin": "http://notebook.example"})
        assert "access-control-allow-origin" not in response.headers
    with make_client(engine, tmp_path, cors_origins=["http://notebook.example"]) as open_to_one:
        allowed = open_to_one.options("/api/attention", headers={"Origin": "http://notebook.example", **preflight})
        assert allowed.headers["access-control-allow-origin"] == "http://notebook.example"
        other = open_to_one.get("/api/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    with make_client(engine, tmp_path, cors_origins=["*"]) as wildcard:
        response = wildcard.get("/api/health", headers={"Origin": "http://any.example"})
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers
