"""Scale (contract "Scale"): pooled thumbnails, an attention memo bounded in bytes, example pages that
predict only themselves."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.api.limits import ModelGate
from headscope.engine.atlas.common import split_maps
from headscope.engine.atlas.layers import readout
from headscope.engine.engine import Engine
from headscope.engine.interventions import ABLATION_MODES
from headscope.engine.model import LoadedModel
from headscope.engine.store import ResultStore
from headscope.settings import Settings

from tests.helpers import make_task
from tests.test_scheduling import hold

LONG = " ".join(["the movie was not very good , but the acting is great !"] * 3)  # 40 tokens


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as test_client:
        yield test_client


def decode(head: dict, shape: tuple[int, int]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(head["data"], validate=True), dtype="<f2").reshape(shape).astype(np.float64)


@pytest.mark.parametrize("size", [8, 32])
def test_thumbnails_are_the_full_maps_average_pooled(client: TestClient, size: int) -> None:
    request = {"text": LONG, "ablate": [[1, 2]], "mode": "uniform"}
    full = client.post("/api/attention", json={**request, "format": "f16"}).json()
    thumbs = client.post("/api/attention", json={**request, "format": "thumb", "size": size}).json()
    n = len(full["tokens"])
    side = min(n, size)
    assert n > 8 and thumbs["tokens"] == full["tokens"] and thumbs["prediction"] == full["prediction"]
    assert len(thumbs["heads"]) == 12
    for big, small in zip(full["heads"], thumbs["heads"], strict=True):
        assert (small["layer"], small["head"]) == (big["layer"], big["head"]) and small["shape"] == [side, side]
        expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(decode(big, (n, n)))[None], side)[0]
        np.testing.assert_allclose(decode(small, (side, side)), expected.numpy(), atol=2e-3)


def test_a_thumbnail_of_a_short_input_is_the_whole_map(client: TestClient) -> None:
    request = {"text": "good film", "heads": [[2, 3]]}
    full = client.post("/api/attention", json={**request, "format": "f16"}).json()
    thumb = client.post("/api/attention", json={**request, "format": "thumb"}).json()["heads"][0]
    n = len(full["tokens"])
    assert thumb["shape"] == [n, n] and thumb["data"] == full["heads"][0]["data"]


def test_attention_memo_is_bounded_in_bytes(tiny_model: LoadedModel, tmp_path: Path) -> None:
    layers, heads, n = tiny_model.num_layers, tiny_model.num_heads, 15  # "a film is good ... !" is 15 tokens
    one_entry = (layers * heads * n * n + layers * heads * n + layers * n * n) * 4  # weights, value norms, rollout
    engine = Engine(tiny_model, make_task(), ResultStore(tmp_path / "r.sqlite"), attention_cache_bytes=2 * one_entry)
    texts = [f"{w} film is good and the plot is fun , not bad !" for w in ("a", "the", "very")]
    first = engine.attention(texts[0], None, [])
    assert first.nbytes == one_entry
    assert engine.attention(texts[0], None, []) is first  # memoised
    engine.attention(texts[1], None, [])
    engine.attention(texts[2], None, [])  # a third entry pushes out the least recently used
    assert engine.attention_memo_bytes() == 2 * one_entry
    assert engine.attention(texts[0], None, []) is not first
    np.testing.assert_array_equal(engine.attention(texts[0], None, []).weights, first.weights)
    tiny = Engine(tiny_model, make_task(), ResultStore(tmp_path / "t.sqlite"), attention_cache_bytes=one_entry - 1)
    tiny.attention(texts[0], None, [])
    assert tiny.attention_memo_bytes() == 0  # larger than the whole budget: answered, not kept


def gated_engine_counting_passes(model: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An engine behind a model gate the test can hold, and a list that grows by one per forward pass."""
    gate = ModelGate(queue_size=8)
    engine = Engine(model, make_task(), ResultStore(tmp_path / "r.sqlite"), scheduler=gate)
    passes: list[int] = []
    original = model.run_layers
    monkeypatch.setattr(model, "run_layers", lambda *a, **k: passes.append(1) or original(*a, **k))
    return gate, engine, passes


def test_calls_for_one_input_that_wait_together_run_one_forward(tiny_model: LoadedModel, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard asks for the grid's thumbnails, the focused head and the prediction of one new input at
    once: the calls queued behind the first answer from its forward instead of each running their own."""
    gate, engine, passes = gated_engine_counting_passes(tiny_model, tmp_path, monkeypatch)
    holder, release = hold(gate)
    answers: list[object] = []
    callers = [threading.Thread(target=lambda: answers.append(engine.attention(LONG, None, [(1, 2)], "uniform")))
               for _ in range(3)]
    for caller in callers:
        caller.start()
    assert gate.wait_until(lambda g: g.waiting == 3, timeout=60)  # all three missed the memo and wait
    release.set()
    for thread in (holder, *callers):
        thread.join(60)
    assert len(passes) == 1 and len(answers) == 3 and all(answer is answers[0] for answer in answers)


def test_an_examples_page_predicts_only_that_page(tiny_model: LoadedModel, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(tiny_model, make_task(dev=200, train=0), ResultStore(tmp_path / "r.sqlite"), batch_size=8)
    encoded: list[str] = []
    original = tiny_model.encode_batch

    def counting(texts: list[str], pairs: list[str | None]) -> dict[str, torch.Tensor]:
        encoded.extend(texts)
        return original(texts, pairs)

    monkeypatch.setattr(tiny_model, "encode_batch", counting)
    total, items = engine.examples("dev", 150, 5)
    assert total == 200 and [i["id"] for i in items] == list(range(150, 155))
    dev = engine.task.split("dev")
    assert sorted(encoded) == sorted(e.text for e in dev[150:155])  # nothing beyond the page was run
    engine.examples("dev", 150, 5)
    assert len(encoded) == 5  # a page seen before is answered from memory
    monkeypatch.undo()
    whole = engine.baseline_predictions("dev")
    assert [i["predicted"] for i in items] == [engine.model.labels[p] for p in whole[150:155]]


def test_examples_search_pages_through_the_matches_and_predicts_only_them(
        client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = engine.task.split("dev")
    matching = [e for e in dev if "good" in e.text.casefold()]
    assert 3 < len(matching) < len(dev)
    encoded: list[str] = []
    original = engine.model.encode_batch

    def counting(texts: list[str], pairs: list[str | None]) -> dict[str, torch.Tensor]:
        encoded.extend(texts)
        return original(texts, pairs)

    monkeypatch.setattr(engine.model, "encode_batch", counting)
    page = client.get("/api/examples", params={"q": "GOOD", "offset": 1, "limit": 2}).json()
    assert page["total"] == len(matching) and [i["id"] for i in page["items"]] == [e.id for e in matching[1:3]]
    assert sorted(encoded) == sorted(e.text for e in matching[1:3])  # only the page's matches were run
    monkeypatch.undo()
    baseline = engine.baseline_predictions("dev")
    assert [i["predicted"] for i in page["items"]] == [engine.model.labels[baseline[e.id]] for e in matching[1:3]]
    assert client.get("/api/examples", params={"q": "no such words"}).json() == {"total": 0, "items": []}
    too_long = client.get("/api/examples", params={"q": "x" * 201})
    assert too_long.status_code == 422 and "200" in too_long.text


def test_cpu_batches_are_bounded_in_tokens(tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """One layer of a batch is the smallest unit of batch work the scheduler hands out, so on a CPU a batch
    holds at most CPU_BATCH_TOKENS padded tokens (one long input alone) and an interactive call waits for at
    most one layer of one."""
    from headscope.engine import evaluation

    examples = make_task(dev=60, train=0).split("dev")
    lengths = tiny_model.token_counts([e.text for e in examples], [None] * len(examples))
    whole = evaluation.prepare_split(tiny_model, examples, batch_size=64, budget_bytes=0)
    assert len(whole.batches) == 1  # 60 short sentences fit 1,024 tokens
    monkeypatch.setattr(evaluation, "CPU_BATCH_TOKENS", 64)
    bounded = evaluation.prepare_split(tiny_model, examples, batch_size=64, budget_bytes=0)
    assert all(b.input_ids.numel() <= 64 or b.size == 1 for b in bounded.batches)
    assert sum(b.size for b in bounded.batches) == 60 and len(bounded.batches) >= 60 * min(lengths) // 64
    assert any(b.size > 1 for b in bounded.batches) and max(lengths) <= 64
    np.testing.assert_allclose(bounded.baseline_logits, whole.baseline_logits, atol=1e-5)
    assert evaluation.rows_per_pass_for(tiny_model, bounded) == 64 // max(b.input_ids.shape[1] for b in bounded.batches)


class RecordingScheduler:
    """Runs every call at once, as the direct scheduler does, and records each call's priority."""

    def __init__(self) -> None:
        self.priorities: list[object] = []

    def schedule(self, call, priority=None):
        self.priorities.append(priority)
        return call()


def test_the_shown_example_is_interactive_and_a_page_to_choose_from_is_batch_work(tiny_model: LoadedModel,
                                                                                  tmp_path: Path) -> None:
    from headscope.engine.scheduling import Priority

    scheduler = RecordingScheduler()
    engine = Engine(tiny_model, make_task(dev=60, train=0), ResultStore(tmp_path / "r.sqlite"), batch_size=8,
                    scheduler=scheduler)
    engine.examples("dev", 7, 1)  # the example a view names
    assert scheduler.priorities and set(scheduler.priorities) == {Priority.INTERACTIVE}
    scheduler.priorities.clear()
    engine.examples("dev", 20, 20)  # the picker's page: never ahead of the grid's attention call
    assert scheduler.priorities and set(scheduler.priorities) == {Priority.BATCH}
    scheduler.priorities.clear()
    engine.examples("dev", 20, 20)
    assert scheduler.priorities == []  # remembered: no model work


def test_views_asking_for_one_example_at_once_run_one_forward(tiny_model: LoadedModel, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The grid, the focused head and the input panel each look up the example a link names at once: the
    lookups queued behind the first answer from its prediction (on BERT-large at 512 tokens, each forward
    is seconds on a CPU)."""
    gate, engine, passes = gated_engine_counting_passes(tiny_model, tmp_path, monkeypatch)
    holder, release = hold(gate)
    answers: list[object] = []
    callers = [threading.Thread(target=lambda: answers.append(engine.examples("dev", 5, 1))) for _ in range(3)]
    for caller in callers:
        caller.start()
    assert gate.wait_until(lambda g: g.waiting == 3, timeout=60)
    release.set()
    for thread in (holder, *callers):
        thread.join(60)
    assert len(passes) == 1 and len(answers) == 3 and all(answer == answers[0] for answer in answers)


def test_looking_up_the_shown_example_and_drawing_it_run_one_forward(tiny_model: LoadedModel, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A link names an example: its views look it up (the text, and the unablated prediction the page shows)
    and then ask for its attention. The lookup's prediction comes from that attention forward, memoised, so
    the two cost one forward, not two (BERT-large at 512 tokens: seconds each on a CPU)."""
    _gate, engine, passes = gated_engine_counting_passes(tiny_model, tmp_path, monkeypatch)
    _total, [item] = engine.examples("dev", 3, 1)
    assert len(passes) == 1
    result = engine.attention(item["text"], item["text_pair"], [], "zero")  # the grid's thumbnails
    assert len(passes) == 1 and item["predicted"] == result.label
    _total, page = engine.examples("dev", 0, 5)  # a page to choose from: predicted as evaluation does
    assert page[3]["predicted"] == item["predicted"]
    monkeypatch.undo()
    whole = engine.baseline_predictions("dev")
    assert [i["predicted"] for i in page] == [engine.model.labels[p] for p in whole[:5]]


def test_an_example_too_long_to_inspect_is_still_predicted(tiny_model: LoadedModel, tmp_path: Path) -> None:
    """Evaluation truncates; /api/attention refuses an input over max_tokens. Looking up such an example
    still gives its prediction, as evaluation makes it."""
    long = make_task(dev=4, train=0)
    long.splits["dev"][2] = replace(long.splits["dev"][2], text=" ".join(["great acting"] * 200))
    engine = Engine(tiny_model, long, ResultStore(tmp_path / "r.sqlite"))
    _total, [item] = engine.examples("dev", 2, 1)
    assert item["predicted"] == engine.model.labels[engine.baseline_predictions("dev")[2]]


def test_tokenising_from_many_threads_at_once(tiny_model: LoadedModel) -> None:
    """The server tokenises in several threads at once (the score's evaluation and the picker's page start
    together once the page is drawn; /api/attention inputs beside them). A fast tokenizer keeps its padding
    settings between calls: unlocked, a batch came back unpadded about 1 call in 20 here (a 500)."""
    texts = [e.text for e in make_task(dev=16, train=0).split("dev")]
    errors: list[Exception] = []

    def calls(call) -> None:
        for _ in range(150):
            try:
                call()
            except Exception as exc:  # any failure is the finding
                errors.append(exc)

    work = [lambda: tiny_model.token_counts(texts[:8], [None] * 8), lambda: tiny_model.encode_batch(texts, [None] * 16),
            lambda: tiny_model.encode_one(texts[3])] * 2
    threads = [threading.Thread(target=calls, args=(call,)) for call in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    padded = tiny_model.encode_batch(texts, [None] * 16)["input_ids"]
    assert padded.shape[0] == 16 and padded.shape[1] == max(tiny_model.token_counts(texts, [None] * 16))


def one_unit_at_a_time(units: list[tuple[int, int]]):
    """A runner that hands out one unit per chunk (what a BERT-large batch gets from the scheduler on a CPU,
    where one layer of a batch already exceeds the chunk budget), noting each chunk's (start, stop)."""
    def run(weights, work) -> None:
        for index in range(len(weights)):
            units.append((index, index + 1))
            work(index, index + 1)

    return run


@pytest.mark.parametrize("kind", ["bert", "modernbert"])
def test_a_pass_cut_between_layers_gives_the_very_same_numbers(kind: str, family_models) -> None:
    """Batch work is handed out a layer of a pass at a time (so an interactive call never waits for a whole
    pass), and every number equals the one-piece run exactly: split preparation (logits and kept layer
    inputs), passes of several masks restarting from kept layers in every mode, and the per-head means."""
    from headscope.engine.evaluation import head_output_means, masked_logits, prepare_split

    model = family_models[kind]
    examples = make_task(dev=24, train=0).split("dev")
    units: list[tuple[int, int]] = []
    whole = prepare_split(model, examples, batch_size=8, budget_bytes=1 << 30)
    cut = prepare_split(model, examples, batch_size=8, budget_bytes=1 << 30, run=one_unit_at_a_time(units))
    assert len(whole.batches) == 3 and len(units) == 3 * model.num_layers  # one unit per batch and layer
    np.testing.assert_array_equal(cut.baseline_logits, whole.baseline_logits)
    for ours, theirs in zip(cut.batches, whole.batches, strict=True):
        assert ours.layer_inputs.keys() == theirs.layer_inputs.keys() == set(range(model.num_layers))
        assert all(torch.equal(ours.layer_inputs[k], theirs.layer_inputs[k]) for k in ours.layer_inputs)
    means = head_output_means(model, examples, batch_size=8)
    units.clear()
    assert torch.equal(head_output_means(model, examples, batch_size=8, run=one_unit_at_a_time(units)), means)
    assert len(units) == 3 * model.num_layers
    disabled = torch.zeros(4, model.num_layers, model.num_heads, dtype=torch.bool)
    disabled[0, 0, 1] = disabled[1, 1, 2] = disabled[2, 2, 0] = True
    disabled[3, 1, :] = True  # restarts at layers 0, 1, 2 and 1: passes of one and of two masks
    for mode in ABLATION_MODES:
        one_piece = masked_logits(model, whole, disabled, mode, means, rows_per_pass=16)
        units.clear()
        pieces = masked_logits(model, whole, disabled, mode, means, rows_per_pass=16, run=one_unit_at_a_time(units))
        np.testing.assert_array_equal(pieces, one_piece)
        # a unit per pass and layer it runs: 3 batches, restarts 0 (3 layers), 1 (2 layers, 2 masks), 2 (1 layer)
        assert len(units) == 3 * (3 + 2 + 1)


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_layer_readouts_cut_between_layers_equal_one_pass(pooling: str, tiny_model: LoadedModel,
                                                          tmp_path: Path) -> None:
    """The Layers page's readouts under a mask are batch work cut between layers too: every state's lens
    logits and pooled vector equal those of the states of a single pass, exactly."""
    from headscope.engine.atlas.layers import batch_states, head_logits, pool

    engine = Engine(tiny_model, make_task(dev=20, train=0), ResultStore(tmp_path / "r.sqlite"), batch_size=8)
    disabled = engine.disabled_tensor([(1, 0), (2, 3)])
    result = readout(engine, "dev", None, disabled, "uniform", pooling)
    for batch in engine.batches("dev", None):
        states, last_mask = batch_states(tiny_model, batch, disabled, "uniform", None, whole_last=pooling == "mean")
        masks = [batch.attention_mask] * tiny_model.num_layers + [last_mask]
        with torch.inference_mode():
            logits = torch.stack([head_logits(tiny_model, s, m) for s, m in zip(states, masks, strict=True)])
            vectors = torch.stack([pool(s, m, pooling) for s, m in zip(states, masks, strict=True)])
        np.testing.assert_array_equal(result.lens_logits[:, batch.positions], logits.float().numpy())
        np.testing.assert_array_equal(result.pooled[:, batch.positions], vectors.float().numpy())


@pytest.mark.parametrize("measure", ["weights", "norm"])
def test_attention_maps_cut_between_layers_equal_one_pass(measure: str, tiny_model: LoadedModel,
                                                          tmp_path: Path) -> None:
    """The atlas's attention maps of a split (patterns, syntax) are batch work cut between layers too (the
    scheduler's first chunk is one layer): each map equals the one captured in a single pass, exactly."""
    from headscope.engine.interventions import capture_attention

    engine = Engine(tiny_model, make_task(dev=20, train=0), ResultStore(tmp_path / "r.sqlite"), batch_size=8)
    disabled = engine.disabled_tensor([(1, 2)])[None]
    maps = {m.position: m for m in split_maps(engine, "dev", None, measure=measure, ablate=[(1, 2)], mode="uniform")}
    assert sorted(maps) == list(range(20))
    for batch in engine.batches("dev", None):
        _, weights, intervention = capture_attention(
            lambda batch=batch: tiny_model.run_layers(tiny_model.embed(batch.input_ids, batch.token_type_ids),
                                                      batch.attention_mask),
            tiny_model.num_layers, disabled=disabled, mode="uniform", capture_values=measure == "norm")
        weights = weights.float()
        if measure == "norm":
            weights = weights * engine.value_norms(intervention.values)[:, :, :, None, :]
        for row, position in enumerate(batch.positions):
            n = len(maps[position].tokens)
            np.testing.assert_array_equal(maps[position].maps, weights[row, :, :, :n, :n].numpy())


@pytest.mark.parametrize("job", ["split preparation", "picker page", "sweep", "head means", "attention maps",
                                 "layers readout"])
def test_an_interactive_call_during_batch_work_waits_for_one_layer_of_one_batch(
        job: str, tiny_model: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A click that arrives while batch work holds the gate runs right after the unit in progress, and a
    unit is one layer of one batch: on BERT-large at 512 tokens a whole batch is seconds on a CPU, its 24
    layers each a 24th of it (the chunk that holds the gate here is the first one, always one unit)."""
    gate, engine, _ = gated_engine_counting_passes(tiny_model, tmp_path, monkeypatch)
    if job == "sweep":
        engine.prepared("dev", None)
    layers_run: list[tuple[str, int, int]] = []  # (who, from, to) of every run of layers, in order
    entered, release = threading.Event(), threading.Event()
    counting = tiny_model.run_layers

    def blocking(hidden, mask, start=0, stop=None, keep=None):
        who = threading.current_thread().name
        layers_run.append((who, start, tiny_model.num_layers if stop is None else stop))
        if who == "batch" and not entered.is_set():
            entered.set()  # the batch work's first chunk runs: the click arrives now
            assert release.wait(60)
        return counting(hidden, mask, start, stop, keep)

    monkeypatch.setattr(tiny_model, "run_layers", blocking)
    work = {"split preparation": lambda: engine.prepared("dev", None),
            "picker page": lambda: engine.examples("dev", 0, 20),
            "sweep": lambda: engine.evaluate_many([[(0, 1)], [(0, 2)]], "zero", "dev"),
            "head means": engine.head_means,
            "attention maps": lambda: list(split_maps(engine, "dev", None, measure="norm")),
            "layers readout": lambda: readout(engine, "dev", None, engine.disabled_tensor([(1, 0)]), "zero")}[job]
    batch = threading.Thread(target=work, name="batch")
    batch.start()
    assert entered.wait(60)
    answer: list = []
    click = threading.Thread(target=lambda: answer.append(engine.attention(LONG, None, [])), name="click")
    click.start()
    assert gate.wait_until(lambda g: g.waiting == 1, timeout=60)  # the click waits for the chunk in progress
    release.set()
    click.join(60)
    batch.join(60)
    assert answer and not batch.is_alive()
    first_click = [who for who, _, _ in layers_run].index("click")
    before = layers_run[:first_click]
    assert [(start, stop) for _, start, stop in before] == [(0, 1)]  # one layer of the batch work, then the click
    resumed = next(start for who, start, _ in layers_run[first_click:] if who == "batch")
    assert resumed == 1  # the batch's pass went on from layer 1 after the click
