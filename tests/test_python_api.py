"""The Python API (`headscope.open`) on a tiny saved model and a task file: the same numbers as the HTTP
API for the same requests, the same store, views from the dashboard URL's parameters, an offline HTML
export, the dashboard served from the process, and a light `import headscope`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import headscope
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.api.routes.attention import pooled
from headscope.engine.errors import InputError
from headscope.engine.interventions import ABLATION_MODES
from headscope.session import Session
from headscope.settings import Settings

from tests.helpers import write_task_file

TEXT, PAIR = "the movie was very good but the plot", None
MASK = [[0, 1], [1, 2], [2, 3]]


@pytest.fixture(scope="module")
def task_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_task_file(tmp_path_factory.mktemp("task") / "reviews.csv", rows=30, seed=7)


@pytest.fixture(scope="module")
def hs(tiny_model_dir: Path, task_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Session:
    session = headscope.open(tiny_model_dir, task_file, cache_dir=tmp_path_factory.mktemp("cache"))
    yield session
    session.close()


def test_import_is_light_and_the_version_is_the_installed_one() -> None:
    code = ("import sys, headscope; heavy = [m for m in ('torch', 'transformers', 'dash', 'plotly', 'fastapi') "
            "if m in sys.modules]; print(heavy, headscope.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    from importlib.metadata import version

    assert out.strip() == f"[] {version('headscope')}"


def test_numbers_equal_the_http_apis_for_the_same_requests(hs: Session, tiny_model_dir: Path, task_file: Path,
                                                             tmp_path: Path) -> None:
    # the server builds its own engine from the same model and task, on a store of its own
    settings = Settings(model=str(tiny_model_dir), task=str(task_file), cache_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        for mode in ABLATION_MODES:
            answer = client.post("/api/attention", json={"text": TEXT, "ablate": MASK, "mode": mode}).json()
            mine = hs.attention(TEXT, PAIR, MASK, mode)
            assert answer["tokens"] == mine.tokens and answer["segments"] == mine.segments
            assert answer["prediction"]["probs"] == pytest.approx(mine.probs, abs=1e-6)
            assert answer["prediction"]["label"] == mine.label
            http_maps = np.array([h["values"] for h in answer["heads"]]).reshape(mine.weights.shape)
            np.testing.assert_allclose(http_maps, mine.weights, atol=1e-5)  # the API rounds to 5 decimals

            body = client.post("/api/evaluate", json={"ablate": MASK, "mode": mode, "limit": 20}).json()
            result = hs.evaluate(MASK, mode, limit=20)
            assert not body["cached"]  # computed by the server's own engine, not read from hs's store
            for field in ("metric", "score", "baseline", "delta", "n", "flipped", "mode", "split", "ablate",
                          "significance"):
                assert getattr(result, field) == body[field], field
        rollout = client.post("/api/attention", json={"text": TEXT, "measure": "rollout", "ablate": MASK}).json()
        layers = np.array([entry["values"] for entry in rollout["layers"]])
        np.testing.assert_allclose(layers, hs.attention(TEXT, ablate=MASK, measure="rollout").weights, atol=1e-5)
        words = client.post("/api/attention", json={"text": TEXT, "measure": "norm", "level": "word"}).json()
        mine = hs.attention(TEXT, measure="norm", level="word")
        assert words["tokens"] == mine.tokens and words["segments"] == mine.segments
        http_maps = np.array([h["values"] for h in words["heads"]]).reshape(mine.weights.shape)
        np.testing.assert_allclose(http_maps, mine.weights, atol=1e-5)


def test_the_session_shares_the_servers_store(hs: Session) -> None:
    first = hs.evaluate([[2, 0]], "uniform", limit=15)
    settings = hs.settings  # the same cache directory, as a server started beside the notebook would use
    with TestClient(create_app(settings)) as client:
        body = client.post("/api/evaluate", json={"ablate": [[2, 0]], "mode": "uniform", "limit": 15}).json()
    assert body["cached"] and body["score"] == first.score and body["flipped"] == first.flipped


def test_sweep_returns_the_job_result_and_stores_it(hs: Session) -> None:
    result = hs.sweep("single-head", mode="zero", limit=12)
    assert result["n"] == 12 and result["mode"] == "zero"
    delta = np.array(result["delta"])
    assert delta.shape == (3, 4)
    for layer, head in [(0, 0), (2, 3)]:
        assert delta[layer, head] == pytest.approx(hs.evaluate([[layer, head]], "zero", limit=12).delta)
    with TestClient(create_app(hs.settings)) as client:  # a server on the same store shows it at once
        job = client.post("/api/jobs", json={"kind": "single-head", "mode": "zero", "limit": 12}).json()
        stored = client.get(f"/api/jobs/{job['id']}").json()
    assert stored["state"] == "done" and stored["result"]["delta"] == result["delta"]


def test_views_take_the_dashboard_urls_parameters(hs: Session) -> None:
    from_link = hs.view("http://host:8000/?ex=2&layer=1&head=3&off=L0H1,L2H2&mode=uniform")
    from_words = hs.view(ex=2, layer=1, head=3, off=[[2, 2], [0, 1]], mode="uniform")
    assert from_link == from_words
    assert from_link.query == "?ex=2&layer=1&head=3&off=L0H1,L2H2&mode=uniform"
    assert from_link.text == hs.engine.task.split("dev")[2].text and from_link.off == [[0, 1], [2, 2]]
    # keywords win over the link; a text replaces the link's example
    assert hs.view("?ex=2&layer=1", layer=2, text="a fun film").query == "?text=a%20fun%20film&layer=2&head=0&mode=zero"
    with pytest.raises(InputError, match="layer=7"):
        hs.view(layer=7)
    with pytest.raises(InputError, match="mode"):
        hs.view(mode="halfway")


def test_figure_draws_the_focused_heads_map(hs: Session) -> None:
    figure = hs.figure(1, 3, ex=4, off="L0H1", mode="uniform")
    example = hs.engine.task.split("dev")[4]
    expected = hs.attention(example.text, None, [[0, 1]], "uniform").weights[1, 3]
    heatmap = figure.data[0]
    np.testing.assert_allclose(np.asarray(heatmap.z, dtype=np.float32), expected, atol=1e-7)
    assert "L1H3" in figure.layout.title.text and "uniform" in figure.layout.title.text
    assert len(heatmap.x) == len(set(heatmap.x)) == expected.shape[0]  # repeated tokens stay apart


def test_export_html_is_one_offline_file_with_grid_focus_and_scores(hs: Session, tmp_path: Path) -> None:
    path = hs.export_html(tmp_path / "view.html", url="/?ex=3&layer=2&head=1&off=L1H0&mode=zero", limit=20)
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", page) and not re.search(r"<link[^>]+href=", page)  # nothing fetched
    assert page.count("Plotly.newPlot") == 2  # the grid and the focused head, plotly.js inlined once
    scores = hs.evaluate([[1, 0]], "zero", limit=20)
    assert f"{scores.score:.3f}" in page and f"{scores.baseline:.3f}" in page and "L2H1" in page
    grid = json.loads(re.search(r'Plotly.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page, re.S).group(1))
    assert len(grid) == 12  # every head of the tiny model


def plotly_figures(page: str) -> list[dict]:
    """Each `Plotly.newPlot(id, data, layout, ...)` of an exported page as {"data", "layout"}."""
    decoder = json.JSONDecoder()
    figures = []
    for match in re.finditer(r'Plotly.newPlot\(\s*"[^"]+",\s*', page):
        data, end = decoder.raw_decode(page, match.end())
        layout, _ = decoder.raw_decode(page, re.compile(r",\s*").match(page, end).end())
        figures.append({"data": data, "layout": layout})
    return figures


def test_export_html_of_a_long_input_pools_the_grid_keeps_the_focus_whole_and_says_so(hs: Session,
                                                                                    tmp_path: Path) -> None:
    text = " ".join(["the movie was very good"] * 8)  # 40 words + [CLS], [SEP]: longer than a 32-cell thumbnail
    n = len(hs.attention(text).tokens)
    assert n > 32
    page = hs.export_html(tmp_path / "long.html", text=text, layer=1, head=2, measure="norm", limit=10)
    page = page.read_text(encoding="utf-8")
    assert f"average-pooled to 32 x 32 from {n} x {n} tokens" in page
    assert f"the focused head L1H2 in full ({n} x {n})" in page
    grid, focused = plotly_figures(page)
    assert {trace["z"]["shape"].replace(" ", "") for trace in grid["data"]} == {"32,32"}
    assert focused["data"][0]["z"]["shape"].replace(" ", "") == f"{n},{n}"
    # norm maps do not sum to 1: each head on its own colour scale, as the dashboard draws them, said in the title
    assert "each head on its own colour scale" in grid["layout"]["title"]["text"]
    thumbs = pooled(hs.attention(text, measure="norm").weights, 32)  # as /api/attention's thumbnails
    tops = [trace["zmax"] for trace in grid["data"]]
    assert len(set(tops)) > 1
    np.testing.assert_allclose(tops, [max(float(m.max()), 1e-6) for m in thumbs.reshape(-1, 32, 32)], rtol=1e-3)
    # weights: one scale for all heads, also said
    weights = plotly_figures(hs.export_html(tmp_path / "w.html", text=text, limit=10).read_text(encoding="utf-8"))[0]
    assert all(trace.get("coloraxis") == "coloraxis" for trace in weights["data"])
    assert "one colour scale for all" in weights["layout"]["title"]["text"]


@pytest.mark.slow
def test_show_serves_the_dashboard_at_the_state_and_returns_its_link(hs: Session) -> None:
    link = hs.show(ex=2, layer=1, head=3, off="L0H1")
    assert link.endswith("/?ex=2&layer=1&head=3&off=L0H1&mode=zero")
    page = httpx.get(link, timeout=30)
    assert page.status_code == 200 and "<title>headscope</title>" in page.text
    assert hs.show(ex=0).rsplit("/?", 1)[0] == link.rsplit("/?", 1)[0]  # one server per session
