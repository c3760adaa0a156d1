"""The engine in reduced precision and on CUDA agrees with float32 on the CPU (bench/gpu_checks.py).

Each check runs on CUDA in float16 when a GPU is present, and on the CPU in bfloat16 everywhere, so the
low-precision code paths (float32 attention weights, ablation, batched masks) are exercised on machines
without a GPU too. `bench/gpu_check.sh` runs the same checks without pytest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from headscope.engine.engine import Engine

from bench import gpu_checks
from tests.helpers import make_task

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TARGETS = [pytest.param(target, id=f"{target[0]}-{target[1]}", marks=needs_cuda if target[0] == "cuda" else ())
           for target in gpu_checks.TARGETS]


@pytest.fixture(scope="module")
def task():
    return make_task(dev=120, train=30)


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, task, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return gpu_checks.engine_on(tiny_model_dir, task, tmp_path_factory.mktemp("f32"), "cpu", "float32")


@pytest.fixture(scope="module", params=TARGETS)
def low(request: pytest.FixtureRequest, tiny_model_dir: Path, task,
        tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, float]:
    device, dtype, tolerance = request.param
    return gpu_checks.engine_on(tiny_model_dir, task, tmp_path_factory.mktemp(dtype), device, dtype), tolerance


def test_low_precision_predictions_agree_with_float32_except_near_ties(reference: Engine, low) -> None:
    gpu_checks.predictions_agree_except_near_ties(reference, *low)


@pytest.mark.parametrize("mode", gpu_checks.MODES)
def test_ablations_in_low_precision_match_float32(reference: Engine, low, mode: str) -> None:
    gpu_checks.ablations_match_float32(reference, *low, mode)


@pytest.mark.parametrize("mode", ["zero", "uniform"])
def test_attention_weights_come_back_in_float32_with_rows_summing_to_one(reference: Engine, low,
                                                                        mode: str) -> None:
    gpu_checks.attention_is_float32_with_rows_summing_to_one(reference, *low, mode)


def test_batched_masks_equal_one_at_a_time_on_the_device(low) -> None:
    gpu_checks.batched_masks_equal_one_at_a_time(*low)


def test_pass_size_does_not_change_the_numbers(low) -> None:
    gpu_checks.pass_size_does_not_change_the_numbers(*low)


def test_fused_attention_equals_eager_on_the_device(low) -> None:
    gpu_checks.fused_attention_equals_eager(*low)


@needs_cuda
def test_layer_inputs_beyond_the_device_budget_wait_in_pinned_host_memory(low) -> None:
    gpu_checks.layer_inputs_beyond_the_device_budget_wait_in_pinned_host_memory(low[0])
