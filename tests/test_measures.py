"""Attention measures (docs/api.md, "Attention measures"): `norm` against a direct computation from each
family's module weights, `rollout` against a plain numpy computation of the formula, and the API's
`measure` field with its errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.engine.atlas.runner import catalogue, normalise_params, run_job
from headscope.engine.atlas.stats import StatsAccumulator
from headscope.engine.engine import Engine
from headscope.engine.interventions import ABLATION_MODES, Intervention, intervene
from headscope.engine.model import LoadedModel
from headscope.engine.store import ResultStore
from headscope.settings import Settings

from tests.helpers import KINDS, assert_clear_error, make_task

TEXT = "the movie was not very good , but the acting is great !"
PAIR = "a boring plot ."
ABLATE = [[0, 1], [1, 0], [1, 3], [2, 2]]


def values_and_output(layer: torch.nn.Module, kind: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.nn.Linear]:
    """Value vectors ``[n, heads * d]`` of layer input `x` (value projection, bias included) and the
    attention output projection, per family, written here independently of headscope's adapters."""
    if kind == "distilbert":
        return layer.attention.v_lin(x), layer.attention.out_lin
    if kind == "albert":
        return layer.attention.value(x), layer.attention.dense
    if kind == "modernbert":  # pre-norm; one fused projection, [q | k | v] along the output
        qkv = layer.attn.Wqkv(layer.attn_norm(x))
        return qkv[..., 2 * x.shape[-1]:], layer.attn.Wo
    return layer.attention.self.value(x), layer.attention.output.dense


@pytest.fixture(scope="module", params=KINDS)
def family_engine(request: pytest.FixtureRequest, family_models: dict[str, LoadedModel],
                  tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """An engine on the session's tiny model of each family (conftest's family_models)."""
    kind = request.param
    store = ResultStore(tmp_path_factory.mktemp(f"store-{kind}") / "results.sqlite")
    engine = Engine(family_models[kind], make_task(), store, batch_size=8)
    engine.kind = kind  # for the direct computation's module lookup
    return engine


def layer_inputs(engine: Engine, ablate: list[list[int]], mode: str) -> list[torch.Tensor]:
    """The hidden states entering each layer as the model ran this input under the mask."""
    model = engine.model
    encoded = model.encode_one(TEXT, PAIR)
    ids = torch.tensor([encoded["input_ids"]])
    types = torch.tensor([encoded["token_type_ids"]])
    disabled = engine.disabled_tensor(ablate)[None]
    means = engine.head_means() if mode == "mean" else None
    inputs: list[torch.Tensor] = []
    with torch.inference_mode(), intervene(Intervention(disabled=disabled, mode=mode, means=means)):
        hidden = model.embed(ids, types)
        model.run_layers(hidden, torch.ones_like(ids), keep=lambda _, h: inputs.append(h[0]))
    return inputs


def direct_norm(engine: Engine, weights: np.ndarray, ablate: list[list[int]], mode: str) -> np.ndarray:
    """a_ij * ||W_O[:, h*d:(h+1)*d] v_j^h||_2, v = W_V x + b_V, from the modules' own weights."""
    model = engine.model
    d = model.head_dim
    expected = np.zeros_like(weights, dtype=np.float64)
    for layer, x in enumerate(layer_inputs(engine, ablate, mode)):
        with torch.inference_mode():
            v, output = values_and_output(model.layers[layer], engine.kind, x)
        v, w_o = v.double(), output.weight.double()
        for head in range(model.num_heads):
            block = slice(head * d, (head + 1) * d)
            f = v[:, block] @ w_o[:, block].T  # [n, hidden]: f_h(x_j) for every token j
            if [layer, head] in ablate and mode in ("zero", "mean"):
                continue  # moves nothing
            expected[layer, head] = weights[layer, head] * f.norm(dim=-1).numpy()[None, :]
    return expected


@pytest.mark.parametrize("mode", ABLATION_MODES)
def test_norm_equals_a_direct_computation_from_the_module_weights(family_engine: Engine, mode: str) -> None:
    result = family_engine.attention(TEXT, PAIR, ABLATE, mode)
    got = result.maps("norm")
    expected = direct_norm(family_engine, result.weights, ABLATE, mode)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    for layer, head in ABLATE:
        silent = mode in ("zero", "mean")
        assert result.silenced(layer, head) == silent
        assert (not got[layer, head].any()) == silent  # uniform heads still move their values' mean
    # norm is not the weights: some head's rows do not sum to 1
    assert np.abs(got.sum(axis=-1) - 1).max() > 0.1


def reference_rollout(weights: np.ndarray, disabled: set[tuple[int, int]], mode: str) -> np.ndarray:
    """Abnar & Zuidema's rollout, written out plainly in numpy from the contract's formula."""
    layers, heads, n, _ = weights.shape
    identity = np.eye(n)
    rolled = identity
    out = []
    for layer in range(layers):
        kept = [weights[layer, h] for h in range(heads)
                if not (mode in ("zero", "mean") and (layer, h) in disabled)]
        m = np.mean(kept, axis=0) if kept else identity
        b = 0.5 * m + 0.5 * identity
        b = b / b.sum(axis=1, keepdims=True)
        rolled = b @ rolled
        out.append(rolled)
    return np.array(out)


@pytest.mark.parametrize("mode", ABLATION_MODES)
def test_rollout_equals_the_formula_with_heads_and_a_whole_layer_disabled(family_engine: Engine, mode: str) -> None:
    heads = family_engine.model.num_heads
    ablate = [[0, 1], [0, 2], *([1, h] for h in range(heads))]  # layer 1: every head
    result = family_engine.attention(TEXT, PAIR, ablate, mode)
    expected = reference_rollout(result.weights.astype(np.float64), {tuple(p) for p in ablate}, mode)
    np.testing.assert_allclose(result.rollout, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.rollout.sum(axis=-1), 1.0, atol=1e-5)
    if mode == "uniform":  # the disabled heads still mix tokens, 1/L_i over the keys query i may attend
        rows = result.weights[1]
        np.testing.assert_allclose(rows, (rows > 0) / (rows > 0).sum(axis=-1, keepdims=True), atol=1e-6)
        assert not np.allclose(result.rollout[1], result.rollout[0], atol=1e-4)
    else:  # a layer with nothing left passes the rollout through unchanged (B = I)
        np.testing.assert_allclose(result.rollout[1], result.rollout[0], atol=1e-6)


def test_rollout_follows_the_mask(engine: Engine) -> None:
    """On a model whose heads differ (the session's trained BERT), losing heads changes the rollout from
    that layer up, and not below it."""
    plain = engine.attention(TEXT, PAIR, [], "zero").rollout
    masked = engine.attention(TEXT, PAIR, [[1, 0], [1, 3]], "zero").rollout
    np.testing.assert_array_equal(masked[0], plain[0])
    assert np.abs(masked[1] - plain[1]).max() > 1e-3 and np.abs(masked[2] - plain[2]).max() > 1e-3


# -- the API ----------------------------------------------------------------------------------------
@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as test_client:
        yield test_client


def decoded(entry: dict, n: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(entry["data"]), dtype="<f2").reshape(n, n).astype(np.float64)


@pytest.mark.parametrize("mode", ABLATION_MODES)
def test_norm_through_the_api_in_json_and_f16(client: TestClient, engine: Engine, mode: str) -> None:
    request = {"text": TEXT, "ablate": [[1, 2]], "mode": mode, "measure": "norm"}
    body = client.post("/api/attention", json=request).json()
    assert body["measure"] == "norm" and "layers" not in body
    expected = engine.attention(TEXT, None, [[1, 2]], mode).maps("norm")
    n = len(body["tokens"])
    for entry in body["heads"]:
        layer, head = entry["layer"], entry["head"]
        np.testing.assert_allclose(entry["values"], expected[layer, head], atol=1e-5)
        assert entry.get("disabled", False) == ((layer, head) == (1, 2) and mode != "uniform")
    packed = client.post("/api/attention", json={**request, "format": "f16", "heads": [[1, 2], [0, 3]]}).json()
    assert [(e["layer"], e["head"]) for e in packed["heads"]] == [(1, 2), (0, 3)]
    for entry in packed["heads"]:
        np.testing.assert_allclose(decoded(entry, n), expected[entry["layer"], entry["head"]], rtol=2e-3, atol=1e-4)


def test_rollout_through_the_api_answers_layers_and_no_heads(client: TestClient, engine: Engine) -> None:
    request = {"text": TEXT, "text_pair": PAIR, "ablate": [[0, 0]], "measure": "rollout"}
    body = client.post("/api/attention", json=request).json()
    assert body["measure"] == "rollout" and body["heads"] == []
    expected = engine.attention(TEXT, PAIR, [[0, 0]], "zero").rollout
    assert [entry["layer"] for entry in body["layers"]] == list(range(engine.model.num_layers))
    for entry in body["layers"]:
        np.testing.assert_allclose(entry["values"], expected[entry["layer"]], atol=1e-5)
    packed = client.post("/api/attention", json={**request, "format": "f16"}).json()
    n = len(packed["tokens"])
    for entry in packed["layers"]:
        np.testing.assert_allclose(decoded(entry, n), expected[entry["layer"]], atol=1e-3)
    thumbs = client.post("/api/attention", json={**request, "format": "thumb", "size": 8}).json()
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(expected), (8, 8)).numpy()
    assert n > 8 and [entry["shape"] for entry in thumbs["layers"]] == [[8, 8]] * len(expected)
    for entry in thumbs["layers"]:
        got = np.frombuffer(base64.b64decode(entry["data"]), dtype="<f2").reshape(8, 8)
        np.testing.assert_allclose(got, pooled[entry["layer"]], atol=1e-3)


def test_weights_stay_the_default_and_say_so(client: TestClient) -> None:
    default = client.post("/api/attention", json={"text": TEXT, "heads": [[2, 1]]}).json()
    named = client.post("/api/attention", json={"text": TEXT, "heads": [[2, 1]], "measure": "weights"}).json()
    assert default == named and default["measure"] == "weights"
    np.testing.assert_allclose(np.sum(default["heads"][0]["values"], axis=-1), 1.0, atol=1e-4)


@pytest.mark.parametrize(("request_body", "words"), [
    ({"text": TEXT, "measure": "flow"}, ["measure", "'weights', 'norm' or 'rollout'", "'flow'"]),
    ({"text": TEXT, "measure": "rollout", "heads": [[0, 0]]}, ["rollout", "per layer", "heads"]),
    ({"text": TEXT, "measure": "rollout", "heads": []}, ["rollout", "per layer"]),
])
def test_bad_measures_are_clear_422s_and_the_server_keeps_serving(client: TestClient, request_body: dict,
                                                                   words: list[str]) -> None:
    assert_clear_error(client.post("/api/attention", json=request_body), 422, *words)
    assert client.post("/api/attention", json={"text": TEXT, "measure": "rollout"}).status_code == 200


# -- the stats job under the norm measure ------------------------------------------------------------
def test_norm_stats_are_the_stats_of_row_normalised_norm_maps(engine: Engine) -> None:
    """The job's batched, padded pass equals one input at a time through engine.attention."""
    params = normalise_params(engine, "stats", None, "dev", 6, measure="norm")
    result = run_job(engine, "stats", params)
    tokenizer = engine.model.tokenizer
    expected = StatsAccumulator(engine.model.num_layers, engine.model.num_heads, tokenizer.sep_token)
    for example in engine.task.select("dev", 6):
        one = engine.attention(example.text, example.text_pair, [], "zero")
        maps = one.maps("norm")
        expected.add(maps / maps.sum(axis=-1, keepdims=True), one.tokens)
    by_weight = run_job(engine, "stats", normalise_params(engine, "stats", None, "dev", 6))
    assert result["measure"] == "norm" and by_weight["measure"] == "weights" and result["n"] == 6
    for got, want in zip(result["heads"], expected.result()["heads"], strict=True):
        for name in ("to_cls", "to_sep", "to_punct", "to_self", "entropy"):
            assert got[name] == pytest.approx(want[name], abs=1e-5), (got["layer"], got["head"], name)
    assert any(abs(g["to_cls"] - w["to_cls"]) > 1e-3 for g, w in zip(result["heads"], by_weight["heads"], strict=True))


@pytest.mark.parametrize(("body", "words"), [
    ({"kind": "stats", "measure": "rollout"}, ["'weights' or 'norm'", "'rollout'"]),
    ({"kind": "single-head", "measure": "norm"}, ["measure", "stats job only"]),
])
def test_bad_job_measures_are_clear_422s(client: TestClient, body: dict, words: list[str]) -> None:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 422, response.text
    for word in words:
        assert word in response.json()["detail"], response.json()["detail"]


def test_atlas_pairs_each_heads_share_by_weight_and_by_norm(engine: Engine) -> None:
    """The atlas's weight-vs-norm scatter: one point per head per target, at the two stats results' numbers;
    the job the page asks for carries the measure, and the counterpart it looks up is the other measure's."""
    from headscope.app.atlas import counterpart_request, job_request
    from headscope.app.measure_compare import TARGETS, compare_figure, paired_shares

    by_weight = run_job(engine, "stats", normalise_params(engine, "stats", None, "dev", 5))
    by_norm = run_job(engine, "stats", normalise_params(engine, "stats", None, "dev", 5, measure="norm"))
    rows = paired_shares(by_weight, by_norm)
    assert len(rows) == engine.model.num_layers * engine.model.num_heads
    figure = compare_figure(by_weight, by_norm)
    points = [trace for trace in figure.data if trace.mode == "markers"]
    assert len(points) == len(TARGETS)
    for trace, name in zip(points, TARGETS, strict=True):
        np.testing.assert_allclose(trace.x, [h[name] for h in by_weight["heads"]])
        np.testing.assert_allclose(trace.y, [h[name] for h in by_norm["heads"]])
    kinds = {k["kind"]: k for k in catalogue()["kinds"]}
    request = job_request(kinds["stats"], "zero", "dev", 5, {"measure": "norm"})
    assert request["measure"] == "norm"
    assert "measure" not in job_request(kinds["layer"], "zero", "dev", 5, {"measure": "norm"})
    norm_params = normalise_params(engine, "stats", None, "dev", 5, measure="norm")
    weight_params = normalise_params(engine, "stats", None, "dev", 5)
    other = counterpart_request(norm_params)
    assert normalise_params(engine, "stats", other["mode"], other["split"], other["limit"],
                            measure=other["measure"]) == weight_params
