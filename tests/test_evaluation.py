"""Evaluation under a mask: reuse of layer inputs and stored results must not change the numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from headscope.engine.engine import Engine
from headscope.engine.evaluation import choose_kept_layers, masked_logits
from headscope.engine.interventions import ABLATION_MODES, Intervention, intervene
from headscope.engine.metrics import accuracy, f1, mcc
from headscope.engine.store import ResultStore

from tests.helpers import make_task
from tests.test_scale import RecordingScheduler


def full_rerun_predictions(engine: Engine, ablate, mode: str, split: str = "dev") -> np.ndarray:
    """Independent evaluation: each example alone, no batching, no cache, the model's own forward."""
    return full_rerun_logits(engine, ablate, mode, split).argmax(axis=-1)


def near_ties(engine: Engine, split: str = "dev") -> np.ndarray:
    logits = engine.prepared(split, None).baseline_logits
    top = np.sort(logits, axis=-1)
    return (top[:, -1] - top[:, -2]) < 1e-4


def full_rerun_logits(engine: Engine, ablate, mode: str, split: str = "dev") -> np.ndarray:
    model = engine.model
    disabled = engine.disabled_tensor(ablate)[None]
    means = engine.head_means() if mode == "mean" and ablate else None
    rows = []
    for example in engine.task.split(split):
        batch = model.encode_batch([example.text], [example.text_pair])
        with torch.inference_mode(), intervene(Intervention(disabled=disabled, mode=mode, means=means)):
            rows.append(model.model(**batch).logits[0].numpy())
    return np.stack(rows)


def test_layer_cache_equals_full_rerun_for_every_layer_and_mode(engine: Engine) -> None:
    prepared = engine.prepared("dev", None)
    assert prepared.kept_layers == tuple(range(engine.model.num_layers))
    for mode in ABLATION_MODES:
        for layer in range(engine.model.num_layers):
            ablate = [[layer, 1], [layer, 2], [engine.model.num_layers - 1, 2]]
            disabled = engine.disabled_tensor(ablate)[None]
            means = engine.head_means() if mode == "mean" else None
            with_cache = masked_logits(engine.model, prepared, disabled, mode, means, use_layer_cache=True)[0]
            without = masked_logits(engine.model, prepared, disabled, mode, means, use_layer_cache=False)[0]
            assert np.allclose(with_cache, without, atol=1e-5)
            assert not np.allclose(with_cache, prepared.baseline_logits, atol=1e-4), "the mask changed nothing"
            assert np.allclose(with_cache, full_rerun_logits(engine, ablate, mode), atol=1e-4)
            cached = engine.evaluate(ablate, mode, use_store=False, use_layer_cache=True)
            uncached = engine.evaluate(ablate, mode, use_store=False, use_layer_cache=False)
            assert cached.flipped == uncached.flipped and cached.score == uncached.score
            independent = full_rerun_predictions(engine, ablate, mode)
            baseline = engine.baseline_predictions("dev")
            flipped = np.nonzero(independent != baseline)[0]
            ties = near_ties(engine)
            assert [i for i in flipped if not ties[i]] == [i for i in cached.flipped if not ties[i]]


def test_an_unpaired_text_batched_with_pairs_is_encoded_as_it_is_alone(tiny_model, tmp_path: Path) -> None:
    """A task mixing pairs and single texts: a single text gets no empty second segment from its batch, so
    its prediction does not depend on what it is batched with."""
    engine = Engine(tiny_model, make_task(dev=16, train=0, pairs=True), ResultStore(tmp_path / "r.sqlite"),
                    batch_size=8)
    examples = engine.task.split("dev")
    assert {e.text_pair is None for e in examples} == {True, False}
    prepared = engine.prepared("dev", None)
    singles = [i for i, e in enumerate(examples) if e.text_pair is None]
    mixed = [b for b in prepared.batches if len({examples[p].text_pair is None for p in b.positions}) == 2]
    assert mixed, "no batch mixes pairs and single texts: the check would not see the bug"
    tokenizer = tiny_model.tokenizer
    for batch in prepared.batches:
        for row, position in enumerate(batch.positions):
            example = examples[position]
            alone = tokenizer(example.text, example.text_pair, truncation=True, max_length=tiny_model.max_tokens)
            length = int(batch.attention_mask[row].sum())
            assert batch.input_ids[row, :length].tolist() == alone["input_ids"]
            assert batch.token_type_ids[row, :length].tolist() == alone["token_type_ids"]
    for position, example in enumerate(examples):
        encoded = tokenizer(example.text, example.text_pair, return_tensors="pt")
        with torch.inference_mode():
            own = tiny_model.model(**encoded).logits[0].numpy()
        np.testing.assert_allclose(prepared.baseline_logits[position], own, atol=1e-5)
    # the same single texts in a task without pairs: the same predictions
    alone = Engine(tiny_model, make_task(dev=16, train=0), ResultStore(tmp_path / "s.sqlite"), batch_size=8)
    np.testing.assert_allclose(prepared.baseline_logits[singles], alone.prepared("dev", None).baseline_logits[singles],
                               atol=1e-5)


def test_evaluation_fields_follow_the_contract(engine: Engine) -> None:
    everything = [[layer, head] for layer in range(3) for head in range(4)]
    result = engine.evaluate(everything, "zero")
    gold = np.array([e.label for e in engine.task.split("dev")])
    baseline = engine.baseline_predictions("dev")
    assert result.baseline == accuracy(gold, baseline)
    assert result.delta == result.score - result.baseline
    assert result.n == 40 and result.metric == "accuracy" and not result.cached
    assert result.flipped == sorted(result.flipped)
    nothing = engine.evaluate([], "zero")
    assert nothing.score == nothing.baseline and nothing.flipped == []


def test_limit_selects_the_first_examples(engine: Engine) -> None:
    small = engine.evaluate([[0, 0], [1, 1]], "zero", limit=10, use_store=False)
    full = engine.evaluate([[0, 0], [1, 1]], "zero", use_store=False)
    assert small.n == 10
    assert small.flipped == [i for i in full.flipped if i < 10]
    assert engine.evaluate([], "zero", limit=10_000).n == 40


def test_stored_results_survive_a_restart(engine: Engine, tmp_path: Path) -> None:
    first = engine.evaluate([[2, 1]], "uniform", limit=20)
    assert not first.cached
    scheduler = RecordingScheduler()  # sees every piece of model work the reopened engine does
    reopened = Engine(engine.model, engine.task, ResultStore(engine.store.path), scheduler=scheduler)
    second = reopened.evaluate([[2, 1]], "uniform", limit=20)
    assert second.cached and scheduler.priorities == []  # answered from the file, no forward pass
    assert reopened.ready("dev", 20) is None and reopened.ready("dev", None) is None  # nothing prepared
    assert (second.score, second.flipped, second.n) == (first.score, first.flipped, first.n)
    # anything that changes the numbers changes the key
    assert not reopened.evaluate([[2, 1]], "zero", limit=20).cached
    assert not reopened.evaluate([[2, 1]], "uniform", limit=21).cached
    other_task = Engine(engine.model, make_task(seed=9), ResultStore(engine.store.path))
    assert not other_task.evaluate([[2, 1]], "uniform", limit=20).cached


def test_memory_budget_keeps_fewer_layers_and_the_same_answers(engine: Engine) -> None:
    reference = engine.evaluate([[1, 0]], "zero", use_store=False)
    per_layer = engine.prepared("dev", None).kept_bytes // engine.model.num_layers
    small = Engine(engine.model, engine.task, engine.store, batch_size=8, layer_cache_bytes=per_layer)
    assert len(small.prepared("dev", None).kept_layers) == 1
    for layer in range(3):
        assert small.evaluate([[layer, 0]], "zero", use_store=False).flipped == \
            engine.evaluate([[layer, 0]], "zero", use_store=False).flipped
    none = Engine(engine.model, engine.task, engine.store, batch_size=8, layer_cache_bytes=0)
    assert none.prepared("dev", None).kept_layers == ()
    assert none.evaluate([[1, 0]], "zero", use_store=False).flipped == reference.flipped


def test_choose_kept_layers() -> None:
    assert choose_kept_layers(12, 10, 1000) == tuple(range(12))
    assert choose_kept_layers(12, 10, 0) == ()
    kept = choose_kept_layers(12, 10, 35)
    assert len(kept) == 3 and all(1 <= k <= 11 for k in kept)


def test_many_masks_in_one_pass_equal_one_at_a_time(engine: Engine) -> None:
    masks = [[[0, 0]], [[1, 3]], [[2, 2], [0, 1]], []]
    together = engine.evaluate_many(masks, "uniform")
    for mask, predictions in zip(masks, together, strict=True):
        alone = engine.evaluate(mask, "uniform", use_store=False)
        assert np.nonzero(predictions != engine.baseline_predictions("dev"))[0].tolist() == alone.flipped


def test_metrics_on_known_values() -> None:
    gold = np.array([1, 1, 0, 0, 1, 0])
    pred = np.array([1, 0, 0, 1, 1, 0])
    assert accuracy(gold, pred) == 4 / 6
    assert abs(f1(gold, pred) - 2 / 3) < 1e-12  # tp=2, fp=1, fn=1
    assert abs(mcc(gold, pred) - (2 * 2 - 1 * 1) / 9) < 1e-12  # (tp*tn - fp*fn) / sqrt(3*3*3*3)
    assert mcc(gold, gold) == 1.0 and mcc(gold, 1 - gold) == -1.0
    three = np.array([0, 1, 2, 2])
    assert abs(f1(three, np.array([0, 1, 2, 1]), 3) - np.mean([1.0, 2 / 3, 2 / 3])) < 1e-12


def test_examples_page_carries_gold_and_prediction(engine: Engine) -> None:
    total, items = engine.examples("dev", 5, 3)
    assert total == 40 and [i["id"] for i in items] == [5, 6, 7]
    baseline = engine.baseline_predictions("dev")
    assert [i["predicted"] for i in items] == [engine.model.labels[p] for p in baseline[5:8]]
    total, train = engine.examples("train", 0, 4)
    assert total == 30 and len(train) == 4 and all(i["predicted"] in engine.model.labels for i in train)


def test_a_one_shot_iterable_mask_is_read_once(engine: Engine) -> None:
    """A generator can be read once: the store look-up must not consume it before the evaluation runs."""
    heads = [[0, 1], [1, 0], [1, 3], [2, 2]]
    expected = engine.evaluate(heads, "zero", "dev", use_store=False)
    assert expected.flipped, "this mask must change some predictions for the test to mean anything"
    got = engine.evaluate((pair for pair in heads), "zero", "dev")
    assert (got.cached, got.score, got.flipped) == (False, expected.score, expected.flipped)
    again = engine.evaluate(iter(reversed(heads + heads)), "zero", "dev")
    assert (again.cached, again.score) == (True, expected.score)


def test_no_split_means_dev_everywhere(engine: Engine) -> None:
    assert engine.task.split_name(None) == "dev"
    first = engine.evaluate([[1, 2]], "uniform", None, 12)
    same = engine.evaluate([[1, 2]], "uniform", "dev", 12)
    assert (first.cached, same.cached) == (False, True)
    assert engine.mask([[2, 1], [0, 3], [2, 1]]).pairs() == [[0, 3], [2, 1]]


def test_the_api_answers_every_field_of_the_evaluation_record() -> None:
    from headscope.api.schemas import EvaluateResponse
    from headscope.engine.engine import EvaluationResult
    from headscope.engine.records import StoredEvaluation

    stored = set(StoredEvaluation.model_fields)
    assert set(EvaluationResult.model_fields) == stored | {"cached", "elapsed_ms"}
    assert set(EvaluateResponse.model_fields) == stored | {"cached", "elapsed_ms", "split", "ablate"}
