"""Michel et al.'s importance equals a finite-difference estimate; the pruning curve scores what it prunes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from headscope.engine.atlas.importance import head_importance, normalise_per_layer, pruning_curve, raw_importance
from headscope.engine.engine import Engine
from headscope.engine.interventions import Intervention, intervene
from headscope.engine.model import load_model
from headscope.engine.store import ResultStore

from tests.helpers import make_task


@pytest.fixture(scope="module")
def engine64(tiny_model_dir, tmp_path_factory) -> Engine:
    """The tiny model in float64, so central differences are accurate to many digits."""
    model = load_model(tiny_model_dir, dtype="float64", max_tokens=48)
    store = ResultStore(tmp_path_factory.mktemp("imp") / "r.sqlite")
    return Engine(model, make_task(dev=12, train=10), store, batch_size=4)


def per_example_losses(engine: Engine, gates: torch.Tensor, count: int) -> np.ndarray:
    """Cross-entropy of each example through the HF model's own forward (an independent path)."""
    examples = engine.task.select("dev", count)
    encoded = engine.model.encode_batch([e.text for e in examples], [None] * count)
    gold = torch.tensor([e.label for e in examples])
    with torch.no_grad(), intervene(Intervention(gates=gates)):
        logits = engine.model.model(**encoded).logits
    return torch.nn.functional.cross_entropy(logits, gold, reduction="none").numpy()


def test_importance_equals_finite_differences(engine64: Engine) -> None:
    # The intervention point computes softmax in float32 even for a float64 model, so losses carry ~1e-8
    # of noise: a wide step (central differences err by O(eps^2)) beats a tiny one here.
    count, eps = 10, 1e-2
    raw, _ = raw_importance(engine64, "dev", count)
    layers, heads = raw.shape
    expected = np.zeros_like(raw)
    for layer in range(layers):
        for head in range(heads):
            up = torch.ones(layers, heads, dtype=torch.float64)
            down = up.clone()
            up[layer, head] += eps
            down[layer, head] -= eps
            slope = (per_example_losses(engine64, up, count) - per_example_losses(engine64, down, count)) / (2 * eps)
            expected[layer, head] = np.abs(slope).mean()  # E_x |dL_x/dxi_h|: absolute value per example
    assert expected.max() > 1e-4, "gradients vanish: the comparison shows nothing"
    np.testing.assert_allclose(raw, expected, rtol=1e-3)


def test_importance_is_l2_normalised_per_layer(engine64: Engine) -> None:
    result = head_importance(engine64, "zero", "dev", 8)
    norms = np.linalg.norm(np.array(result["importance"]), axis=1)
    np.testing.assert_allclose(norms, 1.0)
    np.testing.assert_allclose(normalise_per_layer(np.array(result["raw"])), result["importance"])
    assert result["n"] == 8


def test_pruning_curve_prunes_least_important_and_scores_the_pruned_set(engine64: Engine) -> None:
    result = pruning_curve(engine64, "zero", "dev", 12)
    points = result["points"]
    assert points[0]["ci95"] == [0.0, 0.0]
    total = engine64.model.num_layers * engine64.model.num_heads
    per_step = round(0.1 * total)
    assert [p["pruned"] for p in points] == [per_step * i for i in range(len(points))]
    assert points[-1]["share"] <= 0.9
    pruned: list[list[int]] = []
    for point in points[1:]:
        assert not any(h in pruned for h in point["heads"]), "a head pruned twice"
        pruned += point["heads"]
        fresh = engine64.evaluate(pruned, "zero", "dev", 12, use_store=False, use_layer_cache=False)
        assert point["score"] == pytest.approx(fresh.score)
        assert point["ci95"] == list(fresh.significance.ci95)  # the seeded interval of that pruned set
    # the first step removes the heads with the lowest normalised importance on the unpruned model
    first = normalise_per_layer(raw_importance(engine64, "dev", 12)[0])
    lowest = {divmod(int(i), engine64.model.num_heads) for i in np.argsort(first, axis=None)[:per_step]}
    assert {tuple(h) for h in points[1]["heads"]} == lowest
