"""Every supported model family through its adapter, on tiny saved models loaded by the production loader:
zero mode equals an independent pre-hook on the attention output projection, uniform rows are 1/L (1/L_i
in ModernBERT's local layers), layer-cached evaluation equals a full re-run, and the head reads the
states as the model's own head does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from headscope.engine.adapters import adapter_for
from headscope.engine.engine import Engine
from headscope.engine.errors import ModelLoadError
from headscope.engine.evaluation import masked_logits
from headscope.engine.interventions import Intervention, intervene
from headscope.engine.model import LoadedModel, load_model
from headscope.engine.store import ResultStore
from transformers import DebertaV2Config

from tests.helpers import KINDS, headscope_logits, make_task, reference_model

TEXTS = ["the movie was very good .", "bad plot , awful acting but fun", "love",
         "not boring ! great film and very fun acting but the plot was bad , awful"]  # the last: > 9 tokens

FAMILY_MODELS = [*KINDS, "modernbert-cls"]  # the models of the `family_dirs` fixture (conftest)


def zero_by_prehook(reference, layer: int, head: int, head_dim: int):
    """Independent zero ablation: a forward pre-hook zeroing head `head`'s slice of the input of layer
    `layer`'s attention output projection. Where layers share the module (ALBERT), only the call that
    runs as layer `layer` is changed (calls counted in order)."""
    adapter = adapter_for(type(reference).__name__)
    layers = adapter.layers(adapter.encoder(reference))
    sharing = [i for i, module in enumerate(layers) if module is layers[layer]]
    calls = [0]

    def hook(_module, args):
        call = calls[0] % len(sharing)
        calls[0] += 1
        if sharing[call] != layer:
            return None
        (context,) = args  # [batch, seq, heads * head_dim]
        context = context.clone()
        context[..., head * head_dim:(head + 1) * head_dim] = 0
        return (context,)

    return adapter.output_projection(layers[layer]).register_forward_pre_hook(hook)


def one_head(model: LoadedModel, layer: int, head: int) -> torch.Tensor:
    disabled = torch.zeros(1, model.num_layers, model.num_heads, dtype=torch.bool)
    disabled[0, layer, head] = True
    return disabled


@pytest.mark.parametrize("kind", FAMILY_MODELS)
def test_nothing_disabled_equals_the_unmodified_model(kind: str, family_models, family_dirs) -> None:
    model = family_models[kind]
    batch = model.encode_batch(TEXTS, [None] * len(TEXTS))
    with torch.inference_mode():
        expected = reference_model(family_dirs[kind])(**model.inputs(batch)).logits
        own = model.model(**model.inputs(batch)).logits
    assert torch.allclose(headscope_logits(model, batch), expected, atol=1e-5)
    assert torch.allclose(own, expected, atol=1e-5)
    w_o = model.output_projection(0)
    assert isinstance(w_o, torch.nn.Linear) and w_o.in_features == model.num_heads * model.head_dim


@pytest.mark.parametrize("kind", FAMILY_MODELS)
def test_zero_mode_equals_prehook_on_output_projection(kind: str, family_models, family_dirs) -> None:
    model = family_models[kind]
    reference = reference_model(family_dirs[kind])
    batch = model.encode_batch(TEXTS, [None] * len(TEXTS))
    for layer, head in [(0, 1), (1, 3), (2, 0)]:
        handle = zero_by_prehook(reference, layer, head, model.head_dim)
        with torch.inference_mode():
            expected = reference(**model.inputs(batch)).logits
        handle.remove()
        intervention = Intervention(disabled=one_head(model, layer, head), mode="zero")
        got = headscope_logits(model, batch, intervention)
        assert torch.allclose(got, expected, atol=1e-5), (layer, head, (got - expected).abs().max())
        assert not torch.allclose(got, headscope_logits(model, batch), atol=1e-6), "ablation changed nothing"
        with torch.inference_mode(), intervene(intervention):  # the model's own forward numbers layers too
            own = model.model(**model.inputs(batch)).logits
        assert torch.allclose(own, expected, atol=1e-5)


def test_albert_layers_share_weights_but_are_ablated_one_by_one(family_models) -> None:
    model = family_models["albert"]
    assert model.layers[0] is model.layers[1] is model.layers[2]
    batch = model.encode_batch(TEXTS, [None] * len(TEXTS))
    base = Intervention(capture_weights=True)
    headscope_logits(model, batch, base)
    ablated = Intervention(disabled=one_head(model, 1, 2), mode="uniform", capture_weights=True)
    headscope_logits(model, batch, ablated)
    assert sorted(ablated.weights) == [0, 1, 2]
    assert torch.equal(ablated.weights[0], base.weights[0])  # the layer below: untouched
    assert not torch.equal(ablated.weights[1][:, 2], base.weights[1][:, 2])
    assert torch.equal(ablated.weights[1][:, [0, 1, 3]], base.weights[1][:, [0, 1, 3]])


@pytest.mark.parametrize("kind", FAMILY_MODELS)
def test_uniform_rows_are_one_over_the_keys_each_query_may_attend(kind: str, family_models) -> None:
    model = family_models[kind]
    batch = model.encode_batch(TEXTS, [None] * len(TEXTS))  # padded: lengths differ
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    assert max(lengths) > 9  # longer than ModernBERT's local window (4 either side)
    window = model.config.sliding_window if kind.startswith("modernbert") else None
    for layer in range(model.num_layers):
        recorded = Intervention(disabled=one_head(model, layer, 2), mode="uniform", capture_weights=True)
        headscope_logits(model, batch, recorded)
        local = window is not None and model.config.layer_types[layer] == "sliding_attention"
        weights = recorded.weights[layer][:, 2]  # [batch, query, key]
        for row, length in enumerate(lengths):
            for i in range(length):  # every real query row
                allowed = [j for j in range(length) if not local or abs(i - j) <= window]
                expected = torch.zeros(weights.shape[-1])
                expected[allowed] = 1.0 / len(allowed)
                assert torch.allclose(weights[row, i], expected, atol=1e-7), (layer, row, i)
    if window is not None:
        assert "sliding_attention" in model.config.layer_types and "full_attention" in model.config.layer_types


@pytest.mark.parametrize("kind", FAMILY_MODELS)
def test_layer_cached_evaluation_equals_a_full_rerun(kind: str, family_models, tmp_path: Path) -> None:
    model = family_models[kind]
    engine = Engine(model, make_task(dev=24, train=12), ResultStore(tmp_path / "results.sqlite"), batch_size=8)
    prepared = engine.prepared("dev", None)
    with torch.inference_mode():  # the baseline equals the model's own forward, example by example
        own = np.stack([model.model(**model.inputs(model.encode_batch([e.text], [None]))).logits[0].numpy()
                        for e in engine.task.split("dev")])
    assert np.allclose(prepared.baseline_logits, own, atol=1e-5)
    for mode in ("zero", "uniform", "mean"):
        for layer in range(model.num_layers):
            ablate = [[layer, 1], [layer, 2], [model.num_layers - 1, 3]]
            disabled = engine.disabled_tensor(ablate)[None]
            means = engine.head_means() if mode == "mean" else None
            cached = masked_logits(model, prepared, disabled, mode, means, use_layer_cache=True)[0]
            rerun = []
            for example in engine.task.split("dev"):
                encoded = model.encode_batch([example.text], [None])
                with torch.inference_mode(), intervene(Intervention(disabled=disabled, mode=mode, means=means)):
                    rerun.append(model.model(**model.inputs(encoded)).logits[0].numpy())
            assert np.allclose(cached, np.stack(rerun), atol=1e-4), (mode, layer)
            assert np.abs(cached - prepared.baseline_logits).max() > 1e-6, (mode, layer, "the mask changed nothing")


@pytest.mark.parametrize("kind", ["distilbert", "modernbert"])
def test_families_without_segments_take_no_token_type_ids(kind: str, family_models) -> None:
    model = family_models[kind]
    encoded = model.encode_batch(["the film", "a plot"], ["was good", "bad"])
    assert "token_type_ids" not in model.inputs(encoded)
    assert set(encoded["token_type_ids"][0].tolist()) == {0, 1}  # segments are still reported


@pytest.mark.parametrize("architecture", ["DebertaV2ForSequenceClassification", "MPNetForSequenceClassification"])
def test_families_outside_the_attention_interface_are_refused_by_name(architecture: str, tmp_path: Path) -> None:
    config = DebertaV2Config(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=37)
    config.architectures = [architecture]
    config.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")  # never read: the architecture is refused first
    with pytest.raises(ModelLoadError) as caught:
        load_model(tmp_path)
    message = str(caught.value)
    assert architecture in message and "attention interface" in message
    for supported in ("BertForSequenceClassification", "DistilBertForSequenceClassification",
                      "AlbertForSequenceClassification", "ModernBertForSequenceClassification"):
        assert supported in message
