"""Layers (docs/api.md, "Layers"): the lens and the probe per layer, and the representations' PCA, checked
against independent computations: the model's own forward with `output_hidden_states`, scikit-learn
fit by hand, numpy's eigendecomposition, and /api/evaluate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.engine.atlas import runner
from headscope.engine.atlas.common import JobCancelled
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.atlas.layers import (
    PROBE_FIT_EXAMPLES,
    REPRESENTATIONS_CAP,
    layer_readouts,
    principal_components,
    readout,
    representations,
)
from headscope.engine.engine import Engine
from headscope.engine.interventions import Intervention, intervene
from headscope.engine.model import LoadedModel
from headscope.engine.store import ResultStore
from headscope.engine.tasks import Example, Task
from headscope.settings import Settings
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tests.helpers import KINDS, LABELS, assert_clear_error, make_task

FAMILIES = (*KINDS, "modernbert-cls")  # the models of conftest's `family_models`


def engine_for(model: LoadedModel, tmp_path: Path, task: Task | None = None) -> Engine:
    return Engine(model, task or make_task(dev=24, train=20), ResultStore(tmp_path / "results.sqlite"), batch_size=8)


def own_hidden_states(engine: Engine, split: str, ablate, mode: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Each example alone through the HF model's own forward (`output_hidden_states`) under the mask:
    per example ``[layers + 1, tokens, hidden]``, and the model's own logits ``[n, labels]``."""
    model = engine.model
    disabled = engine.disabled_tensor(ablate)[None]
    means = engine.head_means() if mode == "mean" and ablate else None
    # transformers reports ModernBERT's last hidden state after its final norm (the others' as the last
    # layer outputs it): take the state the final norm reads instead, as the other layers are reported
    final_norm = getattr(getattr(model.model, "model", None), "final_norm", None)
    seen: list[torch.Tensor] = []
    hook = final_norm.register_forward_pre_hook(lambda _, args: seen.append(args[0])) if final_norm else None
    states, logits = [], []
    try:
        for example in engine.task.split(split):
            batch = model.encode_batch([example.text], [example.text_pair])
            with torch.inference_mode(), intervene(Intervention(disabled=disabled, mode=mode, means=means)):
                out = model.model(**model.inputs(batch), output_hidden_states=True)
            hidden = list(out.hidden_states)
            if final_norm is not None:
                hidden[-1] = seen.pop()
            states.append(torch.stack(hidden)[:, 0].numpy())
            logits.append(out.logits[0].numpy())
    finally:
        if hook is not None:
            hook.remove()
    return states, np.stack(logits)


def family_head(model: LoadedModel, states: torch.Tensor) -> torch.Tensor:
    """Each family's classification head written out from transformers' modules (one unpadded example)."""
    hf, family = model.model, type(model.model).__name__
    if family.startswith("Bert"):
        return hf.classifier(hf.bert.pooler(states))
    if family.startswith("DistilBert"):
        return hf.classifier(torch.relu(hf.pre_classifier(states[:, 0])))
    if family.startswith("Albert"):
        return hf.classifier(hf.albert.pooler_activation(hf.albert.pooler(states[:, 0])))
    if family.startswith("ModernBert"):
        normed = hf.model.final_norm(states)
        pooled = normed.mean(dim=1) if hf.config.classifier_pooling == "mean" else normed[:, 0]
        return hf.classifier(hf.head(pooled))
    return hf.classifier(states)  # RoBERTa's and ELECTRA's heads read the first token themselves


@pytest.mark.parametrize("family", FAMILIES)
def test_lens_at_every_layer_equals_the_head_on_the_models_own_hidden_states(
        family: str, family_models: dict[str, LoadedModel], tmp_path: Path) -> None:
    model = family_models[family]
    engine = engine_for(model, tmp_path)
    ablate, mode = [[1, 0], [1, 3], [2, 2]], "uniform"
    states, own_logits = own_hidden_states(engine, "dev", ablate, mode)
    lens_direct = []
    for layer in range(model.num_layers + 1):
        with torch.inference_mode():
            logits = torch.cat([family_head(model, torch.from_numpy(s[layer][None])) for s in states])
        lens_direct.append(logits.numpy())
    # the head on the last state is the model's own classifier
    np.testing.assert_allclose(lens_direct[-1], own_logits, atol=1e-5)

    result = layer_readouts(engine, ablate, mode, "dev")
    gold = np.array([e.label for e in engine.task.split("dev")])
    assert [row["layer"] for row in result["layers"]] == list(range(model.num_layers + 1))
    for row, logits in zip(result["layers"], lens_direct, strict=True):
        assert row["lens"] == pytest.approx(float(np.mean(logits.argmax(-1) == gold)))
    # and the readout's logits and states themselves, not only their accuracy
    mine = readout(engine, "dev", None, engine.disabled_tensor(ablate), mode)
    np.testing.assert_allclose(mine.lens_logits, np.stack(lens_direct), atol=1e-4)
    np.testing.assert_allclose(mine.pooled, np.stack([s[:, 0] for s in states], axis=1), atol=1e-4)
    plain = readout(engine, "dev", None, engine.disabled_tensor([]), mode)
    np.testing.assert_array_equal(plain.pooled[:2], mine.pooled[:2])  # below layer 1's output: unmoved
    assert not np.allclose(plain.pooled[2:], mine.pooled[2:], atol=1e-4), "the mask changed nothing"


@pytest.mark.parametrize("mode", ["zero", "uniform", "mean"])
def test_lens_at_the_last_layer_is_the_evaluate_score_through_http(mode: str, engine: Engine, tmp_path: Path) -> None:
    ablate = [[0, 1], [2, 0], [2, 3]]
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as client:
        job = client.post("/api/jobs", json={"kind": "layers", "ablate": ablate, "mode": mode}).json()
        jobs: JobManager = client.app.state.jobs
        done = jobs.wait(job["id"], timeout=300)
        assert done.state == "done", done.error
        evaluated = client.post("/api/evaluate", json={"ablate": ablate, "mode": mode}).json()
        fetched = client.get(f"/api/jobs/{job['id']}").json()
    result = fetched["result"]
    assert result["layers"][-1]["lens"] == evaluated["score"]
    assert result["n"] == evaluated["n"] and result["metric"] == evaluated["metric"] == "accuracy"
    assert result["ablate"] == sorted(ablate) and result["mode"] == mode
    assert fetched["params"]["ablate"] == sorted(ablate)
    assert result["n_probe_fit"] == min(PROBE_FIT_EXAMPLES, len(engine.task.split("train")))
    # each number says how sure it is: a seeded paired bootstrap over the scored examples
    gold = np.array([e.label for e in engine.task.split("dev")])
    masked = engine.evaluate_many([ablate], mode, "dev", None)[0]
    draws = np.random.default_rng(0).integers(0, len(gold), size=(1000, len(gold)))
    expected = np.percentile((masked[draws] == gold[draws]).mean(axis=1), [2.5, 97.5])
    assert result["layers"][-1]["lens_ci95"] == pytest.approx(expected.tolist())
    for row in result["layers"]:
        assert row["lens_ci95"][0] <= row["lens"] <= row["lens_ci95"][1]
        assert row["probe_ci95"][0] <= row["probe"] <= row["probe_ci95"][1]


def test_probe_is_the_standardised_logistic_regression_and_reproducible(engine: Engine, tmp_path: Path) -> None:
    ablate, mode = [[1, 1]], "zero"
    first = layer_readouts(engine, ablate, mode, "dev")
    again = layer_readouts(engine_for(engine.model, tmp_path / "other", engine.task), ablate, mode, "dev")
    assert first == again
    # by hand, from the model's own hidden states: StandardScaler + LogisticRegression(C=1), fit on train
    fit_states, _ = own_hidden_states(engine, "train", ablate, mode)
    score_states, _ = own_hidden_states(engine, "dev", ablate, mode)
    fit_y = np.array([e.label for e in engine.task.split("train")])
    gold = np.array([e.label for e in engine.task.split("dev")])
    probes = []
    for layer in range(engine.model.num_layers + 1):
        x_fit = np.stack([s[layer, 0] for s in fit_states]).astype(np.float64)
        x_score = np.stack([s[layer, 0] for s in score_states]).astype(np.float64)
        scaler = StandardScaler().fit(x_fit)
        regression = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x_fit), fit_y)
        probes.append(float(np.mean(regression.predict(scaler.transform(x_score)) == gold)))
    assert [row["probe"] for row in first["layers"]] == pytest.approx(probes)
    assert len(set(probes)) > 1, "every layer decodes equally well: the check would not see a wrong layer"
    assert first["n_probe_fit"] == len(fit_y) and first["probe_split"] == "train"


def test_probe_without_train_fits_the_first_half_and_scores_the_second(tiny_model: LoadedModel,
                                                                         tmp_path: Path) -> None:
    engine = engine_for(tiny_model, tmp_path, make_task(dev=30, train=0))
    result = layer_readouts(engine, [], "zero", "dev", 25)
    assert result["n"] == 25 and result["n_probe_fit"] == 12 and result["n_probe_score"] == 13
    assert result["probe_split"] == "dev"
    states, _ = own_hidden_states(engine, "dev", [], "zero")
    gold = np.array([e.label for e in engine.task.split("dev")])[:25]
    layer = tiny_model.num_layers
    x = np.stack([s[layer, 0] for s in states[:25]]).astype(np.float64)
    scaler = StandardScaler().fit(x[:12])
    predicted = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x[:12]), gold[:12]).predict(
        scaler.transform(x[12:]))
    assert result["layers"][layer]["probe"] == pytest.approx(float(np.mean(predicted == gold[12:])))
    with pytest.raises(Exception, match="at least 2 examples"):
        layer_readouts(engine, [], "zero", "dev", 1)


def test_layers_job_reports_progress_and_stops_between_chunks(engine: Engine) -> None:
    seen: list[float] = []

    def cancelled() -> bool:
        return len(seen) >= 2

    with pytest.raises(JobCancelled):
        layer_readouts(engine, [], "zero", "dev", progress=seen.append, cancelled=cancelled)
    assert len(seen) == 2 and 0 < seen[0] < seen[1] < 1
    full: list[float] = []
    layer_readouts(engine, [], "zero", "dev", progress=full.append)
    assert full == sorted(full) and full[-1] == pytest.approx(1.0)


def test_progress_moves_while_the_split_is_prepared(tiny_model: LoadedModel, tmp_path: Path) -> None:
    """A fresh engine's unablated job first prepares the split (the baseline pass): its progress shows."""
    engine = Engine(tiny_model, make_task(dev=40, train=20), ResultStore(tmp_path / "r.sqlite"), batch_size=4)
    while_preparing: list[float] = []

    def progress(share: float) -> None:
        if engine.ready("dev", None) is None:
            while_preparing.append(share)

    layer_readouts(engine, [], "zero", "dev", progress=progress)
    assert engine.ready("dev", None) is not None
    assert len(while_preparing) > 1 and 0 < while_preparing[0] < while_preparing[-1] < 1


def test_a_mask_on_an_unprepared_split_runs_one_pass_with_the_same_numbers(tiny_model: LoadedModel,
                                                                           tmp_path: Path) -> None:
    """Under a mask the readout starts from the embeddings when the split is not prepared (no baseline pass
    first), and from the kept layer inputs when it is: the same numbers, to the bit."""
    ablate, mode = [[1, 2], [2, 0]], "uniform"
    fresh = engine_for(tiny_model, tmp_path / "fresh")
    from_embeddings = readout(fresh, "dev", None, fresh.disabled_tensor(ablate), mode)
    assert fresh.ready("dev", None) is None
    prepared = engine_for(tiny_model, tmp_path / "prepared")
    prepared.prepared("dev", None)
    restarted = readout(prepared, "dev", None, prepared.disabled_tensor(ablate), mode)
    np.testing.assert_array_equal(from_embeddings.pooled, restarted.pooled)
    np.testing.assert_array_equal(from_embeddings.lens_logits, restarted.lens_logits)
    # and the lens at the last state is evaluation's logits (the head reading the last layer the same way)
    evaluated = prepared.evaluate(ablate, mode, use_store=False)
    assert fresh.score(from_embeddings.lens_logits[-1].argmax(-1), from_embeddings.gold) == evaluated.score


def test_representations_under_a_mask_are_kept_so_another_layer_costs_no_pass(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ablate, mode = [[0, 2], [1, 0]], "zero"
    first = representations(engine, 1, "dev", None, ablate, mode)
    passes: list[int] = []
    original = engine.model.run_layers

    def counting(*args, **kwargs):
        passes.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine.model, "run_layers", counting)
    again = representations(engine, 1, "dev", None, ablate, mode)
    other_layer = representations(engine, 3, "dev", None, ablate, mode)
    assert passes == []  # both answered from the kept readout
    assert again == first
    monkeypatch.undo()
    fresh = representations(engine_for(engine.model, tmp_path / "fresh", engine.task), 3, "dev", None, ablate, mode)
    assert other_layer == fresh
    assert representations(engine, 3, "dev", None, ablate, "uniform") != other_layer  # the mode is in the key


def test_job_parameters_are_canonical_and_checked(engine: Engine) -> None:
    params = runner.normalise_params(engine, "layers", "zero", None, None, ablate=[[2, 1], [0, 3], [2, 1]])
    assert params["ablate"] == [[0, 3], [2, 1]] and params["split"] == "dev"
    unablated = [runner.normalise_params(engine, "layers", mode, None, None) for mode in ("zero", "mean")]
    assert unablated[0] == unablated[1] and unablated[0]["mode"] is None  # nothing disabled: one job
    with pytest.raises(Exception, match="L9H0"):
        runner.normalise_params(engine, "layers", "zero", None, None, ablate=[[9, 0]])
    with pytest.raises(Exception, match="takes no ablate"):
        runner.normalise_params(engine, "single-head", "zero", None, None, ablate=[[0, 0]])
    rows = runner.result_rows({"layers": [{"layer": 0, "lens": 0.5, "probe": 0.6}]})
    assert rows == [{"layer": 0, "lens": 0.5, "probe": 0.6}]


def test_principal_components_against_numpys_svd() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + rng.normal(size=6) * 10
    coordinates, explained, components = principal_components(x)
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(explained, singular[:2] ** 2 / np.sum(singular ** 2), rtol=1e-9)
    for k in range(2):
        expected = vt[k] if vt[k][np.argmax(np.abs(vt[k]))] > 0 else -vt[k]  # the sign rule
        np.testing.assert_allclose(components[k], expected, atol=1e-9)
        np.testing.assert_allclose(coordinates[:, k], centred @ expected, atol=1e-8)
        assert components[k][np.argmax(np.abs(components[k]))] > 0
    # flipping the data flips the raw SVD signs, never the reported ones
    np.testing.assert_allclose(principal_components(-x)[2], components, atol=1e-9)
    assert principal_components(x[:1])[1].tolist() == [0.0, 0.0]  # one example: no variance to share
    line = principal_components(np.outer(np.arange(5.0), [1.0, -3.0, 2.0]))  # rank 1: one component
    assert line[1][0] == pytest.approx(1.0) and line[1][1] == 0.0 and not line[2][1].any()
    assert line[2][0] == pytest.approx(np.array([-1.0, 3.0, -2.0]) / np.sqrt(14))  # largest loading positive


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_representations_project_the_pooled_states_of_the_models_own_forward(pooling: str, engine: Engine,
                                                                              tmp_path: Path) -> None:
    ablate, mode, layer = [[0, 2], [1, 0]], "zero", 2
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as client:
        response = client.post("/api/representations", json={"layer": layer, "ablate": ablate, "mode": mode,
                                                              "pooling": pooling, "limit": 20})
        evaluated = client.post("/api/evaluate", json={"ablate": ablate, "mode": mode, "limit": 20}).json()
    assert response.status_code == 200, response.text
    body = response.json()
    states, own_logits = own_hidden_states(engine, "dev", ablate, mode)
    pooled = np.stack([s[layer, 0] if pooling == "first" else s[layer].mean(axis=0) for s in states[:20]])
    coordinates, explained, _ = principal_components(pooled)
    assert body["explained"] == pytest.approx(explained.tolist(), rel=1e-4)
    got = np.array([[p["x"], p["y"]] for p in body["points"]])
    np.testing.assert_allclose(got, coordinates, atol=1e-3)
    assert [p["id"] for p in body["points"]] == list(range(20))
    assert [p["label"] for p in body["points"]] == [LABELS[e.label] for e in engine.task.split("dev")[:20]]
    predicted = [LABELS[i] for i in own_logits[:20].argmax(-1)]
    assert [p["predicted"] for p in body["points"]] == predicted
    right = np.mean([p["predicted"] == p["label"] for p in body["points"]])
    assert right == pytest.approx(evaluated["score"])
    assert body["n"] == 20 and body["layer"] == layer and body["pooling"] == pooling and body["ablate"] == ablate


def test_representations_unablated_uses_baseline_predictions(engine: Engine) -> None:
    body = representations(engine, 1, "dev", 12)
    baseline = engine.prepared("dev", 12).baseline_predictions
    assert [p["predicted"] for p in body["points"]] == [LABELS[i] for i in baseline]
    assert 0 < body["explained"][1] <= body["explained"][0] < 1


@pytest.fixture
def big_client(tiny_model: LoadedModel, tmp_path: Path) -> Iterator[TestClient]:
    rows = [Example(i, "the movie was good", None, i % 2) for i in range(REPRESENTATIONS_CAP + 1)]
    task = Task(name="big", labels=LABELS, metric="accuracy", splits={"dev": rows[:10], "train": rows})
    engine = Engine(tiny_model, task, ResultStore(tmp_path / "results.sqlite"), batch_size=8)
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as client:
        yield client


@pytest.mark.parametrize(("body", "words"), [
    ({"layer": 0, "split": "train"}, ["5001 examples", "at most 5000", "limit"]),
    ({"layer": 0, "limit": 5001}, ["less than or equal to 5000", "5001"]),
    ({"layer": 4}, ["unknown layer 4", "0", "3"]),
    ({"layer": 0, "pooling": "max"}, ["pooling", "first", "mean"]),
    ({"layer": 0, "ablate": [[0, 9]]}, ["L0H9"]),
    ({"layer": 0, "split": "test"}, ["test", "dev"]),
])
def test_representations_bad_requests_are_422s_that_name_the_limit(big_client: TestClient, body: dict,
                                                                   words: list[str]) -> None:
    assert_clear_error(big_client.post("/api/representations", json=body), 422, *words)
    assert big_client.get("/api/health").status_code == 200
    # with a limit under the cap the same large split is served
    if body.get("split") == "train":
        ok = big_client.post("/api/representations", json={"layer": 0, "split": "train", "limit": 2})
        assert ok.status_code == 200 and ok.json()["n"] == 2
