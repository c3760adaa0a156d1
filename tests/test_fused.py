"""Fused attention (torch's scaled_dot_product_attention) in passes that read nothing back: the eager numbers
in every ablation mode and every supported family (padding, a different mask per row, a whole layer,
ModernBERT's local windows), through the evaluation path too; a pass that captures or gates stays eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from headscope.engine.engine import Engine
from headscope.engine.evaluation import head_output_means, masked_logits, prepare_split
from headscope.engine.interventions import ABLATION_MODES, Intervention, at_layer, headscope_attention, intervene
from headscope.engine.model import LoadedModel

from tests.helpers import KINDS, headscope_logits, make_task

FAMILY_MODELS = [*KINDS, "modernbert-cls"]  # the models of the `family_dirs` fixture (conftest)
# padded to 17 tokens: longer than ModernBERT's local window (4 either side), so its windows matter
TEXTS = ["the movie was not very good , but the acting is great and fun !", "bad plot", "a fun and very good film ."]
TOLERANCE = dict(atol=1e-6, rtol=1e-5)  # measured differences: <= 1.2e-7


@pytest.fixture(scope="module")
def means(family_models: dict[str, LoadedModel]) -> dict[str, torch.Tensor]:
    """Each family's per-head mean outputs over a small split (what `mean` mode puts in)."""
    examples = make_task(dev=12, train=0).split("dev")
    return {kind: head_output_means(model, examples, batch_size=8) for kind, model in family_models.items()}


def row_masks(model: LoadedModel) -> torch.Tensor:
    """``[3, layers, heads]``: one head, two heads of another layer, a head and a whole layer."""
    disabled = torch.zeros(len(TEXTS), model.num_layers, model.num_heads, dtype=torch.bool)
    disabled[0, 0, 1] = True
    disabled[1, 1, [0, 3]] = True
    disabled[2, 2, 2] = True
    disabled[2, 0, :] = True
    return disabled


def logits_of(model: LoadedModel, disabled: torch.Tensor, mode: str, means: torch.Tensor, fused: bool,
              **fields: object) -> torch.Tensor:
    batch = model.encode_batch(TEXTS, [None] * len(TEXTS))
    return headscope_logits(model, batch, Intervention(disabled=disabled, mode=mode, means=means, fused=fused,
                                                       **fields))


@pytest.mark.parametrize("kind", FAMILY_MODELS)
def test_fused_attention_gives_the_eager_numbers_in_every_mode(kind: str, family_models, means) -> None:
    model = family_models[kind]
    disabled = row_masks(model)
    nothing = torch.zeros_like(disabled)
    plain = logits_of(model, nothing, "zero", means[kind], fused=False)
    torch.testing.assert_close(logits_of(model, nothing, "zero", means[kind], fused=True), plain, **TOLERANCE)
    for mode in ABLATION_MODES:
        eager = logits_of(model, disabled, mode, means[kind], fused=False)
        fused = logits_of(model, disabled, mode, means[kind], fused=True)
        torch.testing.assert_close(fused, eager, **TOLERANCE, msg=lambda m, mode=mode: f"{kind} {mode}: {m}")
        # tiny models attend almost uniformly, so `uniform` moves their logits by only ~1e-5: the
        # kernel-level test below checks the modes where they change a lot
        assert float((eager - plain).abs().max()) > 4e-6, f"{kind} {mode}: the masks must change the logits"


@pytest.mark.parametrize("kind", FAMILY_MODELS)
def test_evaluation_passes_equal_eager_forwards(kind: str, family_models, means) -> None:
    """masked_logits (fused, masks sharing passes, restarts from kept layers) against one eager forward per
    mask and example."""
    model = family_models[kind]
    examples = make_task(dev=10, train=0).split("dev")
    prepared = prepare_split(model, examples, batch_size=4, budget_bytes=1 << 30)
    masks = torch.zeros(3, model.num_layers, model.num_heads, dtype=torch.bool)
    masks[0, 0, 1] = masks[1, 1, :2] = masks[2, 2, 3] = True
    for mode in ABLATION_MODES:
        fused = masked_logits(model, prepared, masks, mode, means[kind], rows_per_pass=64)
        for m in range(len(masks)):
            batch = model.encode_batch([e.text for e in examples], [None] * len(examples))
            eager = headscope_logits(model, batch, Intervention(disabled=masks[m:m + 1], mode=mode,
                                                                means=means[kind]))
            np.testing.assert_allclose(fused[m], eager.numpy(), atol=1e-5, rtol=1e-5, err_msg=f"{kind} {mode} {m}")
    unablated = headscope_logits(model, model.encode_batch([e.text for e in examples], [None] * len(examples)))
    np.testing.assert_allclose(prepared.baseline_logits, unablated.numpy(), atol=1e-5, rtol=1e-5)


def additive(allowed: torch.Tensor) -> torch.Tensor:
    return torch.where(allowed, 0.0, torch.finfo(torch.float32).min)


@pytest.mark.parametrize("mask_kind", ["none", "padding", "padding-bool", "window"])
def test_the_fused_kernel_equals_eager_on_peaked_attention(mask_kind: str) -> None:
    """headscope_attention itself, on sharp random attention (so every mode moves the outputs a lot), with
    each kind of mask the adapters pass: none, [batch, 1, 1, key] padding (additive or bool), and a
    [batch, 1, query, key] sliding window over padding (ModernBERT's local layers)."""
    generator = torch.Generator().manual_seed(0)
    batch, heads, n, d = 3, 4, 9, 8
    query, key, value = (torch.randn(batch, heads, n, d, generator=generator) * 3 for _ in range(3))
    real = torch.ones(batch, n, dtype=torch.bool)
    real[1, 5:] = real[2, 2:] = False
    positions = torch.arange(n)
    window = (positions[:, None] - positions[None, :]).abs() <= 2
    mask = {"none": None, "padding": additive(real[:, None, None, :]), "padding-bool": real[:, None, None, :],
            "window": additive(real[:, None, None, :] & window[None, None])}[mask_kind]
    disabled = torch.zeros(batch, 1, heads, dtype=torch.bool)
    disabled[0, 0, 1] = disabled[1, 0, [0, 3]] = disabled[2, 0, :] = True
    module = torch.nn.Module().eval()
    means = torch.randn(1, heads, d, generator=generator)

    def attend(**fields: object) -> torch.Tensor:
        with intervene(Intervention(**fields)), at_layer(0):
            return headscope_attention(module, query, key, value, mask)[0]

    plain = attend()
    torch.testing.assert_close(attend(fused=True), plain, atol=1e-5, rtol=1e-5)
    for mode in ABLATION_MODES:
        eager = attend(disabled=disabled, mode=mode, means=means)
        torch.testing.assert_close(attend(disabled=disabled, mode=mode, means=means, fused=True), eager,
                                   atol=1e-5, rtol=1e-5)
        assert float((eager - plain).abs().max()) > 0.1, mode


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per call of torch's fused attention kernel during the test (a spy around it)."""
    seen: list[bool] = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return seen


def test_passes_that_read_back_or_gate_stay_eager(tiny_model: LoadedModel, calls: list[bool]) -> None:
    model = tiny_model
    batch = model.encode_batch(TEXTS, [None] * len(TEXTS))
    logits_of(model, row_masks(model), "zero", None, fused=True)
    assert len(calls) == model.num_layers, "a pass that reads nothing back takes the fused kernel in every layer"
    for fields in ({"capture_weights": True}, {"capture_outputs": True}, {"capture_values": True}):
        calls.clear()
        captured = Intervention(fused=True, **fields)
        with torch.inference_mode(), intervene(captured):
            model.run_layers(model.embed(batch["input_ids"], batch["token_type_ids"]), batch["attention_mask"])
        assert not calls, fields
        assert sorted({**captured.weights, **captured.outputs, **captured.values}) == list(range(model.num_layers))
    gates = torch.full((model.num_layers, model.num_heads), 0.5)
    calls.clear()
    gated = logits_of(model, row_masks(model), "zero", None, fused=True, gates=gates)
    assert not calls
    torch.testing.assert_close(gated, logits_of(model, row_masks(model), "zero", None, fused=False, gates=gates))


def test_evaluations_take_the_fused_path_and_attention_stays_eager(engine: Engine, calls: list[bool]) -> None:
    engine.evaluate([[1, 2]], "uniform", limit=8, use_store=False)
    assert calls, "evaluation passes capture nothing, so they take the fused path"
    calls.clear()
    result = engine.attention("a good film", None, [[1, 2]], "uniform")
    assert not calls, "/api/attention's pass returns the weights, so it stays eager"
    np.testing.assert_allclose(result.weights.sum(axis=-1), 1.0, atol=1e-5)
