"""The engine in reduced precision and on CUDA agrees with float32 on the CPU: the checks themselves.

Plain functions with plain asserts, so `bench/gpu_check.sh` runs them on a bare GPU machine with only
torch and transformers (`python -m bench.gpu_checks`), and tests/test_gpu.py runs the same functions
under pytest. Each check compares an engine on a target (CUDA in float16, the default there, and the
CPU in bfloat16 everywhere) with the float32 CPU engine, the yardstick.
"""

from __future__ import annotations

import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from headscope.engine.engine import Engine
from headscope.engine.evaluation import masked_logits, prepare_split, rows_per_pass_for
from headscope.engine.interventions import ABLATION_MODES
from headscope.engine.model import load_model
from headscope.engine.store import ResultStore

# device, dtype, logit tolerance against float32 (bfloat16 keeps 8 bits of mantissa, float16 11)
TARGETS = [("cuda", "float16", 0.02), ("cpu", "bfloat16", 0.1)]
MASKS = [[[0, 1]], [[1, 2], [2, 0]], [[2, 3]], [[0, 0], [1, 1], [2, 2]]]
TEXT = "the movie was very good . bad plot , but fun acting !"
MODES = tuple(ABLATION_MODES)


def engine_on(model_dir: Path, task, folder: Path, device: str, dtype: str) -> Engine:
    model = load_model(model_dir, device=device, dtype=dtype, max_tokens=48)
    assert model.device.type == device and str(model.dtype) == f"torch.{dtype}"
    return Engine(model, task, ResultStore(folder / f"{device}-{dtype}.sqlite"), batch_size=16)


def mask_logits(engine: Engine, masks: list, mode: str, **options) -> np.ndarray:
    disabled = torch.stack([engine.disabled_tensor(m) for m in masks])
    means = engine.head_means() if mode == "mean" else None
    return masked_logits(engine.model, engine.prepared("dev", None), disabled, mode, means, **options)


def decided(logits: np.ndarray, margin: float) -> np.ndarray:
    """Examples whose float32 winner leads by more than `margin` (the rest are near ties)."""
    top = np.sort(logits, axis=-1)
    return (top[..., -1] - top[..., -2]) > margin


def predictions_agree_except_near_ties(reference: Engine, engine: Engine, tolerance: float) -> None:
    expected = reference.prepared("dev", None).baseline_logits
    got = engine.prepared("dev", None).baseline_logits
    clear = decided(expected, 10 * tolerance)
    assert clear.mean() > 0.5, "too many near ties for the comparison to mean anything"
    assert np.array_equal(got.argmax(-1)[clear], expected.argmax(-1)[clear])
    assert np.abs(got - expected).max() < tolerance
    for mode in MODES:
        for ablate in MASKS:
            mine = engine.evaluate(ablate, mode, use_store=False)
            yardstick = reference.evaluate(ablate, mode, use_store=False)
            ties = ~decided(mask_logits(reference, [ablate], mode)[0], 10 * tolerance)
            assert [i for i in mine.flipped if not ties[i]] == [i for i in yardstick.flipped if not ties[i]]


def ablations_match_float32(reference: Engine, engine: Engine, tolerance: float, mode: str) -> None:
    expected = mask_logits(reference, MASKS, mode)
    got = mask_logits(engine, MASKS, mode)
    assert got.dtype == np.float32
    baseline = reference.prepared("dev", None).baseline_logits
    moved = np.abs(expected - baseline[None]).max(axis=(1, 2))
    assert (moved > 3 * tolerance).all(), "an ablation that moves nothing cannot tell the paths apart"
    assert np.abs(got - expected).max() < tolerance


def attention_is_float32_with_rows_summing_to_one(reference: Engine, engine: Engine, tolerance: float,
                                                  mode: str) -> None:
    got = engine.attention(TEXT, None, [[0, 1], [2, 3]], mode)
    expected = reference.attention(TEXT, None, [[0, 1], [2, 3]], mode)
    assert got.weights.dtype == np.float32 and got.weights.shape == expected.weights.shape
    assert np.abs(got.weights.sum(axis=-1) - 1).max() < 1e-5
    assert np.abs(got.weights - expected.weights).max() < tolerance / 5
    assert got.label == expected.label
    if mode == "uniform":  # the disabled head's weights are 1/L over the L real tokens
        length = got.weights.shape[-1]
        assert np.allclose(got.weights[0, 1], 1 / length, atol=1e-6)


def batched_masks_equal_one_at_a_time(engine: Engine, tolerance: float) -> None:
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


def pass_size_does_not_change_the_numbers(engine: Engine, tolerance: float) -> None:
    assert rows_per_pass_for(engine.model, engine.prepared("dev", None)) >= 1
    sweep = [[[layer, head]] for layer in range(3) for head in range(4)]
    small = mask_logits(engine, sweep, "zero", rows_per_pass=16)
    large = mask_logits(engine, sweep, "zero", rows_per_pass=100_000)
    assert np.abs(small - large).max() < tolerance / 2


def layer_inputs_beyond_the_device_budget_wait_in_pinned_host_memory(engine: Engine) -> None:
    """CUDA only."""
    examples = engine.task.split("dev")
    on_device = prepare_split(engine.model, examples, batch_size=16, budget_bytes=1 << 30)
    on_host = prepare_split(engine.model, examples, batch_size=16, budget_bytes=1 << 30, device_budget_bytes=0)
    assert all(t.device.type == "cuda" for b in on_device.batches for t in b.layer_inputs.values())
    assert all(t.device.type == "cpu" and t.is_pinned() for b in on_host.batches for t in b.layer_inputs.values())
    disabled = torch.stack([engine.disabled_tensor(m) for m in MASKS])
    from_device = masked_logits(engine.model, on_device, disabled, "zero")
    from_host = masked_logits(engine.model, on_host, disabled, "zero")
    assert np.abs(from_device - from_host).max() <= 1e-3  # the same numbers, only where they waited


def fused_attention_equals_eager(engine: Engine, tolerance: float) -> None:
    """Evaluation passes take the fused kernel (scaled_dot_product_attention): on the target it must give
    the eager path's logits in every mode, with a different mask per row and padding."""
    from headscope.engine.interventions import Intervention, intervene

    model = engine.model
    rows = engine.task.split("dev")[:16]
    encoded = {k: v.to(model.device)
               for k, v in model.encode_batch([e.text for e in rows], [e.text_pair for e in rows]).items()}
    disabled = torch.zeros(len(rows), model.num_layers, model.num_heads, dtype=torch.bool, device=model.device)
    disabled[::2, 1, 2] = disabled[1::2, 0, :] = True
    for mode in MODES:
        means = engine.head_means() if mode == "mean" else None
        logits = []
        for fused in (False, True):
            with torch.inference_mode(), intervene(Intervention(disabled=disabled, mode=mode, means=means,
                                                                fused=fused)):
                hidden = model.run_layers(model.embed(encoded["input_ids"], encoded["token_type_ids"]),
                                          encoded["attention_mask"])
                logits.append(model.classify(hidden, encoded["attention_mask"]).float())
        assert float((logits[0] - logits[1]).abs().max()) < tolerance / 2, mode


def checks_for(reference: Engine, engine: Engine, tolerance: float) -> dict[str, Callable[[], None]]:
    """Every check of one target, by name."""
    checks = {"predictions agree": lambda: predictions_agree_except_near_ties(reference, engine, tolerance)}
    for mode in MODES:
        checks[f"ablation {mode}"] = lambda m=mode: ablations_match_float32(reference, engine, tolerance, m)
    for mode in ("zero", "uniform"):
        checks[f"attention {mode}"] = lambda m=mode: attention_is_float32_with_rows_summing_to_one(
            reference, engine, tolerance, m)
    checks["batched masks"] = lambda: batched_masks_equal_one_at_a_time(engine, tolerance)
    checks["pass size"] = lambda: pass_size_does_not_change_the_numbers(engine, tolerance)
    checks["fused attention"] = lambda: fused_attention_equals_eager(engine, tolerance)
    if engine.model.device.type == "cuda":
        checks["pinned host memory"] = lambda: layer_inputs_beyond_the_device_budget_wait_in_pinned_host_memory(
            engine)
    return checks


def main() -> int:
    """Build the tiny test model, run every check on every target this machine has; exit 1 on a failure."""
    from tests.helpers import build_model_dir, make_task

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir = build_model_dir(folder / "tiny-bert")
        task = make_task(dev=120, train=30)
        reference = engine_on(model_dir, task, folder, "cpu", "float32")
        for device, dtype, tolerance in TARGETS:
            if device == "cuda" and not torch.cuda.is_available():
                print(f"skipped {device}-{dtype}: no CUDA device")
                continue
            engine = engine_on(model_dir, task, folder, device, dtype)
            for name, check in checks_for(reference, engine, tolerance).items():
                try:
                    check()
                    print(f"passed {device}-{dtype}: {name}")
                except Exception:
                    failures += 1
                    print(f"FAILED {device}-{dtype}: {name}\n{traceback.format_exc()}")
    print(f"{failures} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
