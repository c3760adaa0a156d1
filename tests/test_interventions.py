"""The intervention mechanism against independent implementations of each ablation mode."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from headscope.engine.engine import Engine
from headscope.engine.interventions import Intervention
from headscope.engine.model import LoadedModel, load_model

from tests.helpers import build_model_dir, headscope_logits, reference_model

TEXTS = ["the movie was very good .", "bad plot , awful acting but fun", "love", "not boring ! great film"]


def with_output_prehook(reference, layer: int, head: int, head_dim: int, replace):
    """Independent ablation: rewrite head `head`'s slice of the input of layer `layer`'s output projection."""
    dense = reference.base_model.encoder.layer[layer].attention.output.dense

    def hook(_module, args):
        (context,) = args  # [batch, seq, heads * head_dim]
        context = context.clone()
        piece = slice(head * head_dim, (head + 1) * head_dim)
        context[..., piece] = replace(context[..., piece])
        return (context,)

    return dense.register_forward_pre_hook(hook)


@pytest.mark.parametrize("kind", ["bert", "roberta", "electra"])
def test_nothing_disabled_equals_unmodified_model(kind: str, tmp_path: Path) -> None:
    directory = build_model_dir(tmp_path / kind, kind=kind)
    model = load_model(directory, max_tokens=48)
    batch = model.encode_batch(TEXTS, [None] * len(TEXTS))
    with torch.inference_mode():
        expected = reference_model(directory)(**batch).logits
    got = headscope_logits(model, batch)
    assert torch.allclose(got, expected, atol=1e-6), (got - expected).abs().max()
    # the full-model path with headscope attention agrees as well
    with torch.inference_mode():
        assert torch.allclose(model.model(**batch).logits, expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["bert", "roberta", "electra"])
def test_zero_mode_equals_prehook_on_output_projection(kind: str, tmp_path: Path) -> None:
    directory = build_model_dir(tmp_path / kind, kind=kind, seed=3)
    model = load_model(directory, max_tokens=48)
    reference = reference_model(directory)
    batch = model.encode_batch(TEXTS, [None] * len(TEXTS))
    for layer, head in [(0, 1), (1, 3), (2, 0)]:
        handle = with_output_prehook(reference, layer, head, model.head_dim, torch.zeros_like)
        with torch.inference_mode():
            expected = reference(**batch).logits
        handle.remove()
        disabled = torch.zeros(1, model.num_layers, model.num_heads, dtype=torch.bool)
        disabled[0, layer, head] = True
        got = headscope_logits(model, batch, Intervention(disabled=disabled, mode="zero"))
        assert torch.allclose(got, expected, atol=1e-5), (layer, head, (got - expected).abs().max())
        assert not torch.allclose(got, headscope_logits(model, batch), atol=1e-6), "ablation changed nothing"


def test_uniform_mode_sets_exact_one_over_length_and_leaves_the_rest(tiny_model: LoadedModel) -> None:
    batch = tiny_model.encode_batch(TEXTS, [None] * len(TEXTS))  # padded: lengths differ
    lengths = batch["attention_mask"].sum(dim=1)
    base = Intervention(capture_weights=True)
    headscope_logits(tiny_model, batch, base)
    disabled = torch.zeros(1, tiny_model.num_layers, tiny_model.num_heads, dtype=torch.bool)
    disabled[0, 1, 2] = True
    ablated = Intervention(disabled=disabled, mode="uniform", capture_weights=True)
    headscope_logits(tiny_model, batch, ablated)

    weights = ablated.weights[1][:, 2]  # [batch, query, key]
    for row, length in enumerate(lengths.tolist()):
        real = weights[row, :length, :length]
        assert torch.equal(real, torch.full_like(real, 1.0 / length))
        assert torch.all(weights[row, :length, length:] == 0)
    # layer 0 untouched; in layer 1 the other heads untouched; layer 2 changes
    assert torch.equal(ablated.weights[0], base.weights[0])
    others = [h for h in range(tiny_model.num_heads) if h != 2]
    assert torch.equal(ablated.weights[1][:, others], base.weights[1][:, others])
    assert not torch.equal(ablated.weights[2], base.weights[2])


def test_uniform_output_is_mean_of_value_vectors(tiny_model: LoadedModel) -> None:
    batch = tiny_model.encode_batch(TEXTS[:1], [None])
    disabled = torch.zeros(1, tiny_model.num_layers, tiny_model.num_heads, dtype=torch.bool)
    disabled[0, 0, 1] = True
    recorded = Intervention(disabled=disabled, mode="uniform", capture_outputs=True)
    headscope_logits(tiny_model, batch, recorded)
    with torch.inference_mode():
        hidden = tiny_model.embed(batch["input_ids"], batch["token_type_ids"])
        values = tiny_model.layers[0].attention.self.value(hidden)[0]  # [seq, heads * head_dim]
    d = tiny_model.head_dim
    expected = values[:, d:2 * d].mean(dim=0)
    got = recorded.outputs[0][0, 1]  # [query, head_dim]
    assert torch.allclose(got, expected.expand_as(got), atol=1e-6)


def test_mean_mode_uses_the_stored_mean(engine: Engine, tmp_path: Path) -> None:
    model = engine.model
    means = engine.head_means()
    assert means.shape == (model.num_layers, model.num_heads, model.head_dim)
    # stored: a fresh engine on the same store reads it back without recomputing
    fresh = Engine(model, engine.task, engine.store)
    key = fresh.result_key("head-means", split=engine.task.reference_split)
    assert np.array_equal(engine.store.get_array(key), means.numpy())
    # the same mean computed independently from captured outputs over the reference split
    examples = engine.task.split("train")
    batch = model.encode_batch([e.text for e in examples], [None] * len(examples))
    recorded = Intervention(capture_outputs=True)
    headscope_logits(model, batch, recorded)
    real = batch["attention_mask"].bool()
    independent = recorded.outputs[1][:, 3].permute(1, 0, 2)[real.T].mean(dim=0)  # layer 1 head 3
    assert torch.allclose(means[1, 3], independent, atol=1e-5)
    # and the ablation replaces the head's output with it, like a pre-hook would
    reference = reference_model(engine.model.model.name_or_path)
    handle = with_output_prehook(reference, 1, 3, model.head_dim, lambda s: means[1, 3].expand_as(s))
    with torch.inference_mode():
        expected = reference(**batch).logits
    handle.remove()
    disabled = torch.zeros(1, model.num_layers, model.num_heads, dtype=torch.bool)
    disabled[0, 1, 3] = True
    got = headscope_logits(model, batch, Intervention(disabled=disabled, mode="mean", means=means))
    assert torch.allclose(got, expected, atol=1e-5)


def test_per_row_masks_match_one_mask_at_a_time(tiny_model: LoadedModel) -> None:
    batch = tiny_model.encode_batch(TEXTS[:2], [None, None])
    masks = torch.zeros(3, tiny_model.num_layers, tiny_model.num_heads, dtype=torch.bool)
    masks[1, 0, 0] = True
    masks[2, 2, 1] = masks[2, 1, 1] = True
    repeated = {k: v.repeat(3, 1) for k, v in batch.items()}
    together = headscope_logits(tiny_model, repeated,
                                Intervention(disabled=masks.repeat_interleave(2, 0), mode="zero"))
    for m in range(3):
        alone = headscope_logits(tiny_model, batch, Intervention(disabled=masks[m:m + 1], mode="zero"))
        assert torch.allclose(together[2 * m:2 * m + 2], alone, atol=1e-6)


def test_nothing_stays_installed_after_a_call(tiny_model: LoadedModel) -> None:
    batch = tiny_model.encode_batch(TEXTS, [None] * len(TEXTS))
    before = headscope_logits(tiny_model, batch)
    disabled = torch.ones(1, tiny_model.num_layers, tiny_model.num_heads, dtype=torch.bool)
    headscope_logits(tiny_model, batch, Intervention(disabled=disabled, mode="zero"))
    assert torch.equal(headscope_logits(tiny_model, batch), before)


def test_two_threads_with_different_masks_get_their_sequential_answers(engine: Engine) -> None:
    masks = {"a": [[0, 1], [1, 2]], "b": [[2, 3]], "c": []}
    sequential = {name: engine.attention(TEXTS[0], None, mask, "zero") for name, mask in masks.items()}
    unmemoised = Engine(engine.model, engine.task, engine.store, attention_cache_bytes=0)  # every call computes
    results: dict[str, list] = {name: [] for name in masks}

    def worker(name: str) -> None:
        for _ in range(5):
            results[name].append(unmemoised.attention(TEXTS[0], None, masks[name], "zero"))

    threads = [threading.Thread(target=worker, args=(name,)) for name in masks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert unmemoised.attention_memo_bytes() == 0
    for name, answers in results.items():
        assert len({id(answer) for answer in answers}) == len(answers)  # five computations, none shared
        for answer in answers:
            assert np.array_equal(answer.weights, sequential[name].weights)
            assert answer.probs == sequential[name].probs


def test_raw_interventions_in_threads_do_not_cross(tiny_model: LoadedModel) -> None:
    """Without the engine's lock: the context variable alone keeps each thread's mask its own."""
    batch = tiny_model.encode_batch(TEXTS, [None] * len(TEXTS))
    masks = []
    for layer in range(tiny_model.num_layers):
        m = torch.zeros(1, tiny_model.num_layers, tiny_model.num_heads, dtype=torch.bool)
        m[0, layer, :2] = True
        masks.append(m)
    expected = [headscope_logits(tiny_model, batch, Intervention(disabled=m, mode="zero")) for m in masks]
    failures: list[int] = []

    def worker(index: int) -> None:
        for _ in range(10):
            got = headscope_logits(tiny_model, batch, Intervention(disabled=masks[index], mode="zero"))
            if not torch.allclose(got, expected[index], atol=1e-6):
                failures.append(index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(masks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
