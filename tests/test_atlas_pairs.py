"""The `pairs` job: every pair of the listed heads disabled together, the interaction beyond the two single
effects, and their significance (docs/api.md, "Head pairs")."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.engine.atlas import chunks as mask_module
from headscope.engine.atlas.pairs import interaction_contrast, pair_sweep
from headscope.engine.atlas.runner import normalise_params, run_job
from headscope.engine.engine import Engine
from headscope.engine.errors import InputError
from headscope.engine.model import LoadedModel
from headscope.engine.store import ResultStore
from headscope.engine.tasks import Task
from headscope.settings import Settings

from tests.helpers import make_task, write_task_file
from tests.test_jobs_http import poll

HEADS = [[2, 1], [0, 3], [1, 0], [0, 1]]  # given out of order: the result lists them by layer


def test_pairs_score_every_pair_and_the_interaction_beyond_both_heads(engine: Engine,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = engine.evaluate_many

    def counting(masks, *args, **kwargs):
        calls.append(len(masks))
        return original(masks, *args, **kwargs)

    monkeypatch.setattr(engine, "evaluate_many", counting)
    result = pair_sweep(engine, "zero", "dev", None, HEADS)
    monkeypatch.undo()
    heads = sorted(map(tuple, HEADS))
    assert result["heads"] == [list(h) for h in heads] and result["n"] == 40 and result["workers"] == 1
    assert calls == [10]  # the 4 single masks and 6 pairs shared one chunk of forward passes
    delta, interaction = np.array(result["delta"]), np.array(result["interaction"])
    for i, first in enumerate(heads):
        for j, second in enumerate(heads):
            mask = [first] if i == j else [first, second]
            assert delta[i, j] == pytest.approx(engine.evaluate(mask, "zero", use_store=False).delta, abs=1e-12)
            expected = 0.0 if i == j else delta[i, j] - delta[i, i] - delta[j, j]
            assert interaction[i, j] == pytest.approx(expected, abs=1e-12)
    assert result["baseline"] == engine.evaluate([], "zero").baseline
    assert np.any(delta != 0), "the tiny model should move under some pair"


def test_pairs_significance_is_holm_over_the_cells_and_the_interactions(engine: Engine) -> None:
    result = pair_sweep(engine, "uniform", "dev", None, HEADS)
    k = len(HEADS)
    p, holm, significant = (np.array(result[f], dtype=object) for f in ("p_value", "p_holm", "significant"))
    cells = [(i, j) for i in range(k) for j in range(i, k)]
    values = np.array([p[i, j] for i, j in cells], dtype=float)
    adjusted = np.array([holm[i, j] for i, j in cells], dtype=float)
    assert np.all((adjusted >= values - 1e-15) & (adjusted <= 1))
    assert all(significant[i, j] == (holm[i, j] <= 0.05) for i, j in cells)
    m = len(cells)  # Holm: the smallest p-value is multiplied by the family's size
    assert adjusted.min() == pytest.approx(min(1.0, values.min() * m))
    ip, iholm = np.array(result["interaction_p_value"], dtype=object), np.array(result["interaction_p_holm"],
                                                                               dtype=object)
    assert all(ip[i, i] is None and iholm[i, i] is None for i in range(k))  # no test on the diagonal
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    for i, j in pairs:
        assert 0 < ip[i, j] <= 1 and ip[i, j] == ip[j, i] and iholm[i, j] >= ip[i, j]
        if result["interaction"][i][j] == 0:
            assert ip[i, j] == 1.0 or ip[i, j] > 0.5
    assert min(iholm[i, j] for i, j in pairs) == pytest.approx(min(1.0, min(ip[i, j] for i, j in pairs) * 6))


@pytest.mark.parametrize("metric", ["accuracy", "f1", "mcc"])
def test_the_interaction_permutation_flips_the_contrast(metric: str) -> None:
    """No swap gives the observed interaction; swapping every example gives its negative (the sign flip)."""
    rng = np.random.default_rng(3)
    gold, both, first, second, none = (rng.integers(0, 2, 60) for _ in range(5))
    contrast, movable, observed, _ = interaction_contrast(metric, gold, both, first, second, none, 2)
    from headscope.engine import metrics

    def s(p: np.ndarray) -> float:
        return metrics.score(metric, gold, p, 2)

    assert observed == pytest.approx(s(both) - s(first) - s(second) + s(none), abs=1e-12)
    assert contrast(np.zeros((1, movable), dtype=bool))[0] == pytest.approx(observed, abs=1e-12)
    assert contrast(np.ones((1, movable), dtype=bool))[0] == pytest.approx(-observed, abs=1e-12)


def test_pairs_with_f1_runs_the_permutation_of_scores(tiny_model: LoadedModel, tmp_path: Path) -> None:
    base = make_task()
    task = Task(name="tiny-f1", labels=base.labels, metric="f1", splits=base.splits)
    engine = Engine(tiny_model, task, ResultStore(tmp_path / "r.sqlite"), batch_size=8)
    result = pair_sweep(engine, "zero", "dev", 30, [[0, 0], [1, 1], [2, 2]])
    assert result["metric"] == "f1" and result["n"] == 30
    values = [v for row in result["interaction_p_value"] for v in row if v is not None]
    assert len(values) == 6 and all(0 < v <= 1 for v in values)


def test_pairs_parameters_are_checked_and_canonical(engine: Engine) -> None:
    every = [[layer, head] for layer in range(3) for head in range(4)]
    assert normalise_params(engine, "pairs", heads=every)["heads"] is None  # all heads = the null job
    assert normalise_params(engine, "pairs", heads=[[1, 0], [0, 2], [1, 0]])["heads"] == [[0, 2], [1, 0]]
    with pytest.raises(InputError, match="at least 2 distinct heads"):
        normalise_params(engine, "pairs", heads=[[1, 0], [1, 0]])
    with pytest.raises(InputError, match="L5H0"):
        normalise_params(engine, "pairs", heads=[[5, 0], [0, 0]])
    params = normalise_params(engine, "pairs", "zero", "dev", 12, heads=[[0, 0], [2, 3]])
    result = run_job(engine, "pairs", params)
    assert result["n"] == 12 and len(result["delta"]) == 2


def test_pairs_job_over_http(engine: Engine, tmp_path: Path) -> None:
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as client:
        bad = client.post("/api/jobs", json={"kind": "pairs", "heads": [[0, 0]]})
        assert bad.status_code == 422 and "at least 2" in bad.json()["detail"]
        started = client.post("/api/jobs", json={"kind": "pairs", "heads": [[0, 1], [2, 2]], "limit": 10})
        assert started.status_code == 202
        job = poll(client, started.json()["id"])
        assert job["state"] == "done", job
        assert job["params"]["heads"] == [[0, 1], [2, 2]]
        assert job["result"]["delta"][0][1] == pytest.approx(
            client.post("/api/evaluate", json={"ablate": [[0, 1], [2, 2]], "limit": 10}).json()["delta"])


def test_chunks_are_the_same_whatever_runs_them(engine: Engine) -> None:
    masks = [[(0, h)] for h in range(4)] + [[(1, 0), (2, 1)], [(2, 3)]]
    together, workers = mask_module.mask_predictions(engine, masks, "zero", "dev", None)
    apart, _ = mask_module.mask_predictions(engine, masks, "zero", "dev", None, chunk=1)
    assert workers == 1 and together.shape == (6, 40)
    np.testing.assert_array_equal(together, apart)


def test_a_ray_worker_runs_the_chunks_and_passes_of_the_local_run(engine: Engine, tiny_model_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract "Scale": actors use the same mask groups and batch sizes as one process. The driver cuts the
    chunks and sizes the passes once; the local run evaluates exactly those chunks with that pass size, and a
    worker (the Ray actor's class, in this process) given a chunk runs the same masked_logits calls."""
    from headscope.engine import engine as engine_module
    from headscope.engine.atlas.ray_workers import MaskWorker
    from headscope.engine.evaluation import rows_per_pass_for

    calls: list[tuple[bytes, int | None]] = []
    real = engine_module.masked_logits

    def recording(model, prepared, disabled, mode, means=None, **options):
        calls.append((disabled.numpy().tobytes(), options.get("rows_per_pass")))
        return real(model, prepared, disabled, mode, means, **options)

    monkeypatch.setattr(engine_module, "masked_logits", recording)
    masks = [[(layer, head)] for layer in range(3) for head in range(4)] + [[(0, 0), (2, 3)]]
    predictions, _ = mask_module.mask_predictions(engine, masks, "zero", "dev", None, chunk=5)
    local_calls = list(calls)
    rows = rows_per_pass_for(engine.model, engine.prepared("dev", None))
    assert [r for _, r in local_calls] == [rows] * 3  # 13 masks in chunks of 5, each one call, one pass size
    files = {p.name: p.read_bytes() for p in tiny_model_dir.iterdir() if p.is_file()}
    worker = MaskWorker(files, engine.task, name=engine.model.name, max_tokens=engine.model.max_tokens,
                        device="cpu", dtype="float32", batch_size=engine.batch_size,
                        layer_cache_bytes=engine.layer_cache_bytes, threads=1)
    calls.clear()
    parts = mask_module.chunks_of(masks, 5)
    on_worker = np.concatenate([worker.predict(part, "zero", "dev", None, None, rows) for part in parts])
    assert calls == local_calls
    np.testing.assert_array_equal(on_worker, predictions)


def test_sweep_command_writes_pairs_as_csv(tiny_model_dir: Path, tmp_path: Path) -> None:
    from headscope.cli import app
    from typer.testing import CliRunner

    task_file = write_task_file(tmp_path / "task.csv", rows=12, seed=1)
    common = ["sweep", "--kind", "pairs", "--model", str(tiny_model_dir), "--task", str(task_file)]
    env = {"HEADSCOPE_CACHE_DIR": str(tmp_path / "cache"), "HEADSCOPE_MAX_TOKENS": "48"}
    done = CliRunner().invoke(app, [*common, "--heads", "L2H2,L0H1,L1H3", "--out", str(tmp_path / "p.csv")], env=env)
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [(r["first"], r["second"]) for r in rows] == [
        ("L0H1", "L0H1"), ("L0H1", "L1H3"), ("L0H1", "L2H2"), ("L1H3", "L1H3"), ("L1H3", "L2H2"), ("L2H2", "L2H2")]
    assert float(rows[1]["interaction"]) == pytest.approx(
        float(rows[1]["delta"]) - float(rows[0]["delta"]) - float(rows[3]["delta"]))
    survived = sum(r["significant"] == "True" for r in rows)
    interacting = sum(r["interaction_significant"] == "True" for r in rows if r["first"] != r["second"])
    assert (f"{survived} of 6 cells (heads alone and pairs) and {interacting} of 3 interactions significant "
            "after Holm's correction") in done.output  # each Holm family counted once, not over 3 x 3
    bad = CliRunner().invoke(app, [*common, "--heads", "L0H1,head2", "--out", str(tmp_path / "q.csv")], env=env)
    assert bad.exit_code == 2 and "--heads head2" in bad.output
