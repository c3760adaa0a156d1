"""The API through a real uvicorn server on a loopback port: the contract over a socket, eight clients
at once each getting exactly their own answer, and a server that stays responsive (and says 429, not
"wait forever") while model calls are busy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from headscope.api.app import create_app
from headscope.api.limits import ModelGate
from headscope.engine.engine import Engine
from headscope.engine.interventions import ABLATION_MODES
from headscope.engine.model import LoadedModel
from headscope.engine.store import ResultStore
from headscope.server import serve_in_thread
from headscope.settings import Settings

from tests.helpers import make_task

TEXTS = ["the movie was good", "awful plot and boring acting", "not very fun , but great",
         "i love the film !", "the acting is bad", "a great plot", "very very good movie", "hate it ."]
MASKS = [[[0, 0]], [[0, 1], [2, 3]], [[1, 2]], [[2, 0], [2, 1], [2, 2]], [], [[0, 3], [1, 3]], [[1, 0]],
         [[0, 2], [1, 1], [2, 1]]]
MODES = [list(ABLATION_MODES)[i % len(ABLATION_MODES)] for i in range(len(MASKS))]


@contextmanager
def serving(engine: Engine, tmp_path: Path, **settings) -> Iterator[str]:
    """The app for `engine` served by a real uvicorn on a loopback port; yields its base URL."""
    with serve_in_thread(lambda _url: create_app(Settings(cache_dir=tmp_path, **settings), engine=engine)) as url:
        yield url


def fresh_engine(model: LoadedModel, tmp_path: Path, name: str, **task) -> Engine:
    return Engine(model, make_task(**task), ResultStore(tmp_path / f"{name}.sqlite"), batch_size=8)


def wait_for(engine: Engine, url: str, condition, timeout: float = 20.0) -> dict:
    """Wait until the server's gate (the engine's scheduler, in this process) has counters for which
    `condition(counters)` holds, woken at each change of its queue, then read them as a client does, on
    /api/health, which must say the same (the test holds the model, so they stay put)."""
    gate = engine.scheduler
    assert isinstance(gate, ModelGate), "create_app makes the gate the engine's scheduler"

    def counters(g: ModelGate) -> dict:
        return {"running": g.running, "waiting": g.waiting}

    assert gate.wait_until(lambda g: condition(counters(g)), timeout), f"gate never got there: {counters(gate)}"
    body = httpx.get(f"{url}/api/health").json()
    assert condition(body), f"/api/health disagrees with the gate: {body}"
    return body


def test_every_endpoint_over_a_real_socket(engine: Engine, tmp_path: Path) -> None:
    with serving(engine, tmp_path) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/api/health").json()["status"] == "ok"
        assert client.get("/api/model").json()["fingerprint"] == engine.model.fingerprint
        attention = client.post("/api/attention", json={"text": TEXTS[1], "ablate": [[1, 1]], "heads": [[2, 0]]})
        values = np.array(attention.json()["heads"][0]["values"])
        np.testing.assert_allclose(values, engine.attention(TEXTS[1], None, [[1, 1]]).weights[2, 0], atol=5.1e-6)
        evaluation = client.post("/api/evaluate", json={"ablate": [[0, 2]], "limit": 25}).json()
        assert evaluation["score"] == engine.evaluate([[0, 2]], limit=25, use_store=False).score
        assert client.get("/api/examples", params={"limit": 3}).json()["total"] == 40
        missing = client.get("/api/nothing")
        assert missing.status_code == 404 and "nothing" in missing.json()["detail"]
        assert "server" not in missing.headers


def test_eight_clients_at_once_each_get_their_own_answer(engine: Engine, tiny_model: LoadedModel,
                                                         tmp_path: Path) -> None:
    """Answers computed alone on a separate engine (no shared memo or store) must match what eight
    simultaneous clients, each with its own text, mask and mode, get back."""
    alone = fresh_engine(tiny_model, tmp_path, "alone")
    expected_attention = [alone.attention(t, None, m, mode) for t, m, mode in zip(TEXTS, MASKS, MODES, strict=True)]
    expected_scores = [alone.evaluate(m, mode, use_store=False) for m, mode in zip(MASKS, MODES, strict=True)]
    start = threading.Barrier(8)

    def one_client(index: int) -> tuple[dict, dict]:
        with httpx.Client(timeout=60) as client:
            start.wait()
            attention = client.post(f"{url}/api/attention", json={"text": TEXTS[index], "ablate": MASKS[index],
                                                                   "mode": MODES[index]})
            evaluation = client.post(f"{url}/api/evaluate", json={"ablate": MASKS[index], "mode": MODES[index]})
            assert attention.status_code == evaluation.status_code == 200, (attention.text, evaluation.text)
            return attention.json(), evaluation.json()

    with serving(engine, tmp_path) as url, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one_client, range(8)))
    for index, (attention, evaluation) in enumerate(answers):
        expected = expected_attention[index]
        assert attention["tokens"] == expected.tokens
        np.testing.assert_allclose(attention["prediction"]["probs"], expected.probs, atol=1e-6)
        for head in attention["heads"]:
            np.testing.assert_allclose(head["values"], expected.weights[head["layer"], head["head"]], atol=5.1e-6)
        score = expected_scores[index]
        assert (evaluation["score"], evaluation["flipped"], evaluation["mode"]) == \
            (score.score, score.flipped, score.mode)


def test_full_queue_is_429_with_retry_after_while_health_model_and_stored_results_answer(
        engine: Engine, tmp_path: Path) -> None:
    """A forward in progress holds the engine lock; holding it here keeps three evaluations in the gate
    (one running, two queued: concurrency 1, queue 2). A fourth is refused at once; health, the model
    description and an already-stored evaluation still answer quickly; released, the three finish right."""
    stored = engine.evaluate([[2, 2]], "zero")
    masks = [[[0, 0]], [[1, 1]], [[2, 3]]]
    with serving(engine, tmp_path, queue_size=2) as url, ThreadPoolExecutor(3) as pool:
        with engine.lock:
            pending: list[Future] = []
            for admitted, mask in enumerate(masks, start=1):  # one at a time, so the queue order is known
                pending.append(pool.submit(httpx.post, f"{url}/api/evaluate", json={"ablate": mask}, timeout=60))
                wait_for(engine, url, lambda body, k=admitted: body["running"] + body["waiting"] == k)
            assert wait_for(engine, url, lambda body: body["running"] == 1)["waiting"] == 2
            refused = httpx.post(f"{url}/api/evaluate", json={"ablate": [[0, 3]]}, timeout=10)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert "queue_size=2" in refused.json()["detail"] and "concurrency=1" in refused.json()["detail"]
            refused_attention = httpx.post(f"{url}/api/attention", json={"text": "good"}, timeout=10)
            assert refused_attention.status_code == 429
            # The engine's lock is held by this test: whatever answers now never waited for the model.
            for path in ("/api/health", "/api/model"):
                assert httpx.get(url + path, timeout=10).status_code == 200, path
            again = httpx.post(f"{url}/api/evaluate", json={"ablate": [[2, 2]]}, timeout=10).json()
            assert again["cached"] is True and again["score"] == stored.score
            assert not any(future.done() for future in pending)
        results = [future.result().json() for future in pending]
    for mask, result in zip(masks, results, strict=True):
        direct = engine.evaluate(mask, use_store=False)
        assert (result["score"], result["flipped"], result["cached"]) == (direct.score, direct.flipped, False)


def test_interactive_calls_go_ahead_of_queued_evaluations(engine: Engine, tmp_path: Path) -> None:
    """One queue: a chunk of evaluation A runs (held on the engine lock), a chunk of evaluation B queues,
    then attention C queues. Once A's chunk is done, C runs before the rest of A and before B, so a
    click's heatmap waits for one chunk, not for whole evaluations."""
    finished: list[str] = []
    engine.prepared("dev", None)  # A's and B's work is then their masks' chunks alone

    def post(name: str, path: str, body: dict) -> httpx.Response:
        response = httpx.post(f"{url}{path}", json=body, timeout=60)
        finished.append(name)
        return response

    with serving(engine, tmp_path, queue_size=4) as url, ThreadPoolExecutor(3) as pool:
        with engine.lock:
            calls = [pool.submit(post, "A", "/api/evaluate", {"ablate": [[0, 1]]})]
            wait_for(engine, url, lambda body: body["running"] == 1)
            calls.append(pool.submit(post, "B", "/api/evaluate", {"ablate": [[1, 2]]}))
            wait_for(engine, url, lambda body: body["waiting"] == 1)
            calls.append(pool.submit(post, "C", "/api/attention", {"text": TEXTS[0], "heads": [[0, 0]]}))
            wait_for(engine, url, lambda body: body["waiting"] == 2)
        assert all(call.result().status_code == 200 for call in calls)
    assert finished[0] == "C", finished
