"""The engine in reduced precision and on CUDA agrees with float32 on the CPU.

Each test runs on CUDA in float16 (the default there) when a GPU is present, and on the CPU in
bfloat16 everywhere, so the low-precision code paths (float32 attention weights, ablation, batched
masks) are exercised on machines without a GPU too. The float32 CPU engine is the yardstick.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from headscope.engine.engine import Engine
from headscope.engine.evaluation import masked_logits, prepare_split, rows_per_pass_for
from headscope.engine.model import load_model
from headscope.engine.store import ResultStore

from tests.conftest import make_task

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# device, dtype, logit tolerance against float32 (bfloat16 keeps 8 bits of mantissa, float16 11)
TARGETS = [
    pytest.param(("cuda", "float16", 0.02), id="cuda-float16", marks=needs_cuda),
    pytest.param(("cpu", "bfloat16", 0.1), id="cpu-bfloat16"),
]
MASKS = [[[0, 1]], [[1, 2], [2, 0]], [[2, 3]], [[0, 0], [1, 1], [2, 2]]]
TEXT = "the movie was very good . bad plot , but fun acting !"


@pytest.fixture(scope="module")
def task():
    return make_task(dev=120, train=30)


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, task, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    model = load_model(tiny_model_dir, device="cpu", dtype="float32", max_tokens=48)
    return Engine(model, task, ResultStore(tmp_path_factory.mktemp("f32") / "r.sqlite"), batch_size=16)


@pytest.fixture(scope="module", params=TARGETS)
def low(request: pytest.FixtureRequest, tiny_model_dir: Path, task,
        tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, float]:
    device, dtype, tolerance = request.param
    model = load_model(tiny_model_dir, device=device, dtype=dtype, max_tokens=48)
    assert model.device.type == device and str(model.dtype) == f"torch.{dtype}"
    engine = Engine(model, task, ResultStore(tmp_path_factory.mktemp(dtype) / "r.sqlite"), batch_size=16)
    return engine, tolerance


def mask_logits(engine: Engine, masks: list, mode: str, **options) -> np.ndarray:
    disabled = torch.stack([engine.disabled_tensor(m) for m in masks])
    means = engine.head_means() if mode == "mean" else None
    return masked_logits(engine.model, engine.prepared("dev", None), disabled, mode, means, **options)


def decided(logits: np.ndarray, margin: float) -> np.ndarray:
    """Examples whose float32 winner leads by more than `margin` (the rest are near ties)."""
    top = np.sort(logits, axis=-1)
    return (top[..., -1] - top[..., -2]) > margin


def test_low_precision_predictions_agree_with_float32_except_near_ties(reference: Engine, low) -> None:
    engine, tolerance = low
    expected = reference.prepared("dev", None).baseline_logits
    got = engine.prepared("dev", None).baseline_logits
    clear = decided(expected, 10 * tolerance)
    assert clear.mean() > 0.5, "too many near ties for the comparison to mean anything"
    assert np.array_equal(got.argmax(-1)[clear], expected.argmax(-1)[clear])
    assert np.abs(got - expected).max() < tolerance
    for mode in ("zero", "uniform", "mean"):
        for ablate in MASKS:
            mine = engine.evaluate(ablate, mode, use_store=False)
            yardstick = reference.evaluate(ablate, mode, use_store=False)
            ties = ~decided(mask_logits(reference, [ablate], mode)[0], 10 * tolerance)
            assert [i for i in mine.flipped if not ties[i]] == [i for i in yardstick.flipped if not ties[i]]


@pytest.mark.parametrize("mode", ["zero", "uniform", "mean"])
def test_ablations_in_low_precision_match_float32(reference: Engine, low, mode: str) -> None:
    engine, tolerance = low
    expected = mask_logits(reference, MASKS, mode)
    got = mask_logits(engine, MASKS, mode)
    assert got.dtype == np.float32
    baseline = reference.prepared("dev", None).baseline_logits
    moved = np.abs(expected - baseline[None]).max(axis=(1, 2))
    assert (moved > 3 * tolerance).all(), "an ablation that moves nothing cannot tell the paths apart"
    assert np.abs(got - expected).max() < tolerance


@pytest.mark.parametrize("mode", ["zero", "uniform"])
def test_attention_weights_come_back_in_float32_with_rows_summing_to_one(reference: Engine, low,
                                                                        mode: str) -> None:
    engine, tolerance = low
    got = engine.attention(TEXT, None, [[0, 1], [2, 3]], mode)
    expected = reference.attention(TEXT, None, [[0, 1], [2, 3]], mode)
    assert got.weights.dtype == np.float32 and got.weights.shape == expected.weights.shape
    assert np.abs(got.weights.sum(axis=-1) - 1).max() < 1e-5
    assert np.abs(got.weights - expected.weights).max() < tolerance / 5
    assert got.label == expected.label
    if mode == "uniform":  # the disabled head's weights are 1/L over the L real tokens
        length = got.weights.shape[-1]
        assert np.allclose(got.weights[0, 1], 1 / length, atol=1e-6)


def test_batched_masks_equal_one_at_a_time_on_the_device(low) -> None:
    engine, tolerance = low
    masks = [*MASKS, [], [[2, 1]]]
    together = mask_logits(engine, masks, "uniform")
    alone = np.stack([mask_logits(engine, [m], "uniform")[0] for m in masks])
    assert np.abs(together - alone).max() < tolerance / 2  # only summation order may differ
    clear = decided(alone, tolerance)
    assert np.array_equal(together.argmax(-1)[clear], alone.argmax(-1)[clear])
    predictions = engine.evaluate_many(masks, "uniform")
    baseline = engine.baseline_predictions("dev")
    for mask, row, single in zip(masks, predictions, alone, strict=True):
        flipped = engine.evaluate(mask, "uniform", use_store=False).flipped
        ties = ~decided(single[None], tolerance)[0]
        assert [i for i in np.nonzero(row != baseline)[0] if not ties[i]] == [i for i in flipped if not ties[i]]


def test_pass_size_does_not_change_the_numbers(low) -> None:
    engine, tolerance = low
    assert rows_per_pass_for(engine.model, engine.prepared("dev", None)) >= 1
    sweep = [[[layer, head]] for layer in range(3) for head in range(4)]
    small = mask_logits(engine, sweep, "zero", rows_per_pass=16)
    large = mask_logits(engine, sweep, "zero", rows_per_pass=100_000)
    assert np.abs(small - large).max() < tolerance / 2


@needs_cuda
def test_layer_inputs_beyond_the_device_budget_wait_in_pinned_host_memory(low) -> None:
    engine, _ = low
    examples = engine.task.split("dev")
    on_device = prepare_split(engine.model, examples, batch_size=16, budget_bytes=1 << 30)
    on_host = prepare_split(engine.model, examples, batch_size=16, budget_bytes=1 << 30, device_budget_bytes=0)
    assert all(t.device.type == "cuda" for b in on_device.batches for t in b.layer_inputs.values())
    assert all(t.device.type == "cpu" and t.is_pinned() for b in on_host.batches for t in b.layer_inputs.values())
    disabled = torch.stack([engine.disabled_tensor(m) for m in MASKS])
    from_device = masked_logits(engine.model, on_device, disabled, "zero")
    from_host = masked_logits(engine.model, on_host, disabled, "zero")
    assert np.abs(from_device - from_host).max() <= 1e-3  # the same numbers, only where they waited
