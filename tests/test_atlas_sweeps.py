"""Sweeps agree with individual evaluations computed afresh (no store, no layer cache)."""

from __future__ import annotations

import numpy as np
import pytest
from headscope.engine.atlas.sweeps import greedy_search, layer_sweep, single_head_sweep
from headscope.engine.engine import Engine
from headscope.engine.interventions import ABLATION_MODES
from headscope.engine.store import ResultStore
from headscope.engine.tasks import Example, Task

from tests.helpers import LABELS, make_sentences


def fresh(engine: Engine, ablate: list, mode: str, split: str = "dev", limit: int | None = None):
    return engine.evaluate(ablate, mode, split, limit, use_store=False, use_layer_cache=False)


@pytest.mark.parametrize("mode", ABLATION_MODES)
def test_single_head_sweep_equals_individual_evaluations(engine: Engine, mode: str) -> None:
    result = single_head_sweep(engine, mode)
    layers, heads = engine.model.num_layers, engine.model.num_heads
    assert (result["metric"], result["mode"], result["n"]) == ("accuracy", mode, 40)
    assert len(result["delta"]) == layers and all(len(row) == heads for row in result["delta"])
    for layer in range(layers):
        for head in range(heads):
            expected = fresh(engine, [[layer, head]], mode)
            assert result["delta"][layer][head] == pytest.approx(expected.delta), f"L{layer}H{head}"
            assert result["baseline"] == pytest.approx(expected.baseline)
    assert any(d != 0 for row in result["delta"] for d in row), "no head changes anything: the test shows nothing"


def test_single_head_sweep_fills_the_store_for_interactive_requests(engine: Engine) -> None:
    result = single_head_sweep(engine, "zero", limit=20)
    stored = engine.evaluate([[1, 2]], "zero", "dev", 20)
    assert stored.cached
    assert stored.delta == pytest.approx(result["delta"][1][2])
    assert stored.flipped == fresh(engine, [[1, 2]], "zero", limit=20).flipped


@pytest.mark.parametrize("mode", ["zero", "uniform"])
def test_layer_sweep_equals_individual_evaluations(engine: Engine, mode: str) -> None:
    result = layer_sweep(engine, mode, limit=30)
    assert result["n"] == 30 and len(result["delta"]) == engine.model.num_layers
    for layer in range(engine.model.num_layers):
        every_head = [[layer, h] for h in range(engine.model.num_heads)]
        assert result["delta"][layer] == pytest.approx(fresh(engine, every_head, mode, limit=30).delta)


def test_sweep_progress_reaches_one_and_cancel_stops(engine: Engine) -> None:
    from headscope.engine.atlas.common import JobCancelled
    from headscope.engine.atlas.sweeps import score_masks

    seen: list[float] = []
    score_masks(engine, [[[0, h]] for h in range(4)], "zero", "dev", 10, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    with pytest.raises(JobCancelled):
        single_head_sweep(engine, "zero", limit=10, progress=seen.append, cancelled=lambda: True)


@pytest.fixture
def engine_with_test(tiny_model, tmp_path) -> Engine:
    rows = make_sentences(100, seed=5)
    splits = {name: [Example(i, t, None, y) for i, (t, y) in enumerate(part)]
              for name, part in (("dev", rows[:50]), ("test", rows[50:]))}
    task = Task(name="tiny-held-out", labels=LABELS, metric="accuracy", splits=splits)
    return Engine(tiny_model, task, ResultStore(tmp_path / "r.sqlite"), batch_size=16)


def test_greedy_search_improves_on_dev_and_reports_test(engine_with_test: Engine) -> None:
    engine = engine_with_test
    result = greedy_search(engine, "zero", "dev", max_heads=3)
    assert result["held_out"] == "test" and result["held_out_n"] == 50
    previous = result["baseline"]
    for step in result["steps"]:
        dev = fresh(engine, step["heads"], "zero", "dev")
        test = fresh(engine, step["heads"], "zero", "test")
        assert step["score"] == pytest.approx(dev.score) and step["score"] > previous
        assert step["held_out_score"] == pytest.approx(test.score)
        previous = step["score"]
    if len(result["steps"]) < 3:  # it stopped: no further head may raise the dev score
        chosen = result["heads"]
        everything = [[layer, head] for layer in range(3) for head in range(4) if [layer, head] not in chosen]
        assert all(fresh(engine, [*chosen, h], "zero").score <= result["score"] for h in everything)


def test_sweeps_carry_holm_corrected_p_values_in_the_shape_of_delta(engine: Engine) -> None:
    from headscope.engine import significance
    from headscope.engine.atlas.runner import result_rows

    result = single_head_sweep(engine, "zero")
    layers, heads = engine.model.num_layers, engine.model.num_heads
    p = np.array(result["p_value"])
    assert p.shape == np.array(result["delta"]).shape == (layers, heads)
    baseline = engine.baseline_predictions("dev")
    gold = engine.prepared("dev", None).gold
    for layer, head in [(0, 0), (1, 2), (2, 3)]:  # McNemar of each cell from its own predictions
        masked = engine.evaluate_many([[[layer, head]]], "zero", "dev")[0]
        flips = significance.flip_counts(gold, baseline, masked)
        assert p[layer, head] == pytest.approx(significance.mcnemar_exact(*flips))
        stored = engine.evaluate([[layer, head]], "zero")  # the swept cell's stored answer has its significance
        assert stored.cached and stored.significance.p_value == pytest.approx(p[layer, head])
    assert np.allclose(result["p_holm"], significance.holm(p))
    assert (np.array(result["p_holm"]) >= p - 1e-15).all()
    assert result["significant"] == (np.array(result["p_holm"]) <= 0.05).tolist()
    rows = result_rows(result)
    assert len(rows) == layers * heads and {"p_value", "p_holm", "significant"} <= set(rows[0])
    assert rows[5]["p_holm"] == result["p_holm"][1][1]

    by_layer = layer_sweep(engine, "uniform", limit=30)
    assert len(by_layer["p_value"]) == len(by_layer["p_holm"]) == len(by_layer["significant"]) == layers
    assert np.allclose(by_layer["p_holm"], significance.holm(by_layer["p_value"]))


def test_greedy_reports_its_final_sets_significance_on_the_held_out_split(engine_with_test: Engine) -> None:
    result = greedy_search(engine_with_test, "zero", "dev", max_heads=2)
    expected = fresh(engine_with_test, result["heads"], "zero", "test")
    assert result["test_significance"] == expected.significance.model_dump(mode="json")
    assert result["test_significance"]["test"] == "mcnemar-exact"
