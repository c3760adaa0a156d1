"""Fused attention (torch's scaled_dot_product_attention) for passes that capture nothing: the same numbers
as eager attention in every ablation mode, padding included; capturing anything keeps the eager path."""

from __future__ import annotations

import pytest
import torch
from headscope.engine.engine import Engine
from headscope.engine.interventions import ABLATION_MODES, Intervention, intervene

TEXTS = ["the movie was not very good , but the acting is great !", "bad plot", "a fun and very good film ."]


def logits_of(engine: Engine, mode: str, fused: bool, ablate: bool = True) -> torch.Tensor:
    model = engine.model
    encoded = model.encode_batch(TEXTS, [None] * len(TEXTS))  # padded: rows of 4, 8 and 15 tokens
    disabled = torch.zeros(len(TEXTS), model.num_layers, model.num_heads, dtype=torch.bool)
    disabled[0, 0, 1] = disabled[1, 1, [0, 3]] = disabled[2, 2, 2] = True  # a different mask per row
    disabled[2, 0, :] = True  # a whole layer
    disabled &= ablate
    means = engine.head_means() if mode == "mean" else None
    with torch.inference_mode(), intervene(Intervention(disabled=disabled, mode=mode, means=means, fused=fused)):
        hidden = model.embed(encoded["input_ids"], encoded["token_type_ids"])
        return model.classify(model.run_layers(hidden, model.additive_mask(encoded["attention_mask"])))


@pytest.mark.parametrize("mode", ABLATION_MODES)
def test_fused_attention_gives_the_eager_numbers(engine: Engine, mode: str) -> None:
    eager, fused = logits_of(engine, mode, False), logits_of(engine, mode, True)
    torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-5)
    plain = logits_of(engine, mode, True, ablate=False)
    torch.testing.assert_close(plain, logits_of(engine, mode, False, ablate=False), atol=1e-5, rtol=1e-5)
    assert (plain - eager).abs().max() > 1e-3, "the masks must change the logits"


def test_a_pass_that_captures_weights_stays_eager(engine: Engine) -> None:
    model = engine.model
    encoded = model.encode_batch(TEXTS[:1], [None])
    capturing = Intervention(fused=True, capture_weights=True)
    with torch.inference_mode(), intervene(capturing):
        model.run_layers(model.embed(encoded["input_ids"], encoded["token_type_ids"]),
                         model.additive_mask(encoded["attention_mask"]))
    assert sorted(capturing.weights) == list(range(model.num_layers))
    rows = capturing.weights[0][0].sum(dim=-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))


def test_evaluation_uses_fused_attention_where_chosen(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from headscope.engine import evaluation

    chosen = evaluation.fused_attention_for(engine.model)
    assert chosen == (engine.model.device.type in evaluation.FUSED_DEVICES)
    seen: list[bool] = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    engine.evaluate([[1, 2]], "uniform", limit=8, use_store=False)
    monkeypatch.undo()
    assert bool(seen) == chosen
