"""The dashboard in a real headless Chromium against a real server (API + UI in one uvicorn process).

The server runs a tiny BERT through the production loader; `/api/evaluate` is slowed a little so
the busy state is observable. Every number the page shows is checked against the API's own answer.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import numpy as np
import pytest
from headscope.api.app import create_app
from headscope.app import palette
from headscope.app.urlstate import ViewState, to_query
from headscope.engine.engine import Engine, EvaluationResult
from headscope.engine.model import LoadedModel, load_model
from headscope.engine.store import ResultStore
from headscope.server import dashboard_asgi, serve_in_thread
from headscope.settings import Settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import BROWSER_TEST, WORDS, console_errors, drag_zoom, make_task
from tests.test_urlstate import STATES

HOLD_LIMIT_S = 120  # a held evaluation goes on after this even if the test never releases it
WAIT_MS = 30_000

pytestmark = [*BROWSER_TEST]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


class HeldEvaluations(Engine):
    """The real engine, whose masked evaluations for the API can be held back by a test, like a first
    full-dev run on a CPU, to observe the page while a score is being computed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.released = threading.Event()
        self.released.set()

    def evaluate(self, ablate, mode="zero", split=None, limit=None, **kwargs) -> EvaluationResult:
        if self.mask(ablate) and kwargs.get("use_store", True):
            self.released.wait(timeout=HOLD_LIMIT_S)
        return super().evaluate(ablate, mode, split, limit, **kwargs)


@dataclass
class Server:
    url: str
    engine: HeldEvaluations


@pytest.fixture(scope="module")
def running(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real uvicorn server on a loopback port serving /api and the dashboard."""
    folder = tmp_path_factory.mktemp("dashboard")
    engine = HeldEvaluations(tiny_model, make_task(dev=40, train=30), ResultStore(folder / "results.sqlite"),
                             batch_size=8)

    def app(url: str):
        return create_app(Settings(cache_dir=folder), engine=engine, ui=dashboard_asgi(f"{url}/api"))

    with serve_in_thread(app) as url:
        yield Server(url, engine)


@pytest.fixture(scope="module")
def server(running: Server) -> str:
    return running.url


@pytest.fixture(scope="module")
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server}/api", timeout=60) as client:
        yield client


def evaluate(api: httpx.Client, off: list[tuple[int, int]], mode: str = "zero") -> dict:
    response = api.post("/evaluate", json={"ablate": [list(h) for h in off], "mode": mode, "split": None,
                                           "limit": None})
    response.raise_for_status()
    return response.json()


def settled_score(page) -> str:
    """#score's text once it is no longer busy."""
    page.wait_for_selector("#score[aria-busy='false']", timeout=WAIT_MS)
    return page.inner_text("#score")


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


@pytest.fixture(scope="module")
def telling_head(running: Server) -> tuple[int, int]:
    """A head whose removal changes the dev score, found without storing results, so that the page's
    own evaluation of it is a fresh (slowed) one."""
    engine = running.engine
    for layer in range(engine.model.num_layers):
        for head in range(engine.model.num_heads):
            result = engine.evaluate([(layer, head)], use_store=False)
            if result.score != result.baseline:
                return layer, head
    pytest.fail("no single head changes the tiny model's dev score; retrain the fixture model")


def test_focus_then_disable_updates_score_and_url(page, running: Server, server: str, api: httpx.Client,
                                                  telling_head: tuple[int, int]) -> None:
    layer, head = telling_head
    name = f"L{layer}H{head}"
    baseline = evaluate(api, [])
    errors = console_errors(page)
    page.goto(server + ("/" if name != "L0H0" else "/?layer=0&head=1"))  # focused elsewhere: the click moves it
    assert settled_score(page) == f"{baseline['score']:.3f}"
    assert page.inner_text("#baseline-score") == f"{baseline['baseline']:.3f}"
    page.wait_for_selector("#head-grid[aria-busy='false']", timeout=WAIT_MS)

    calls: list[str] = []  # what the page asks its server for: Dash callbacks by their outputs, API paths
    page.on("request", lambda request: calls.append(json.loads(request.post_data)["output"])
            if "_dash-update-component" in request.url else calls.append(request.url) if "/api/" in request.url
            else None)
    page.click(f"[data-focus={name}]")
    page.wait_for_function(f"document.getElementById('focus-title').innerText.startsWith('{name}')")
    assert query_of(page.url)["layer"] == [str(layer)] and query_of(page.url)["head"] == [str(head)]
    assert page.get_attribute("#head-grid", "data-focused") == name
    packed = page.evaluate("document.querySelector('#heatmap .js-plotly-plot').data[0].z")
    shown = np.frombuffer(base64.b64decode(packed["bdata"]), "<f4").reshape(
        [int(side) for side in packed["shape"].split(",")])
    text = api.get("/examples", params={"offset": 0, "limit": 1}).json()["items"][0]["text"]
    served = api.post("/attention", json={"text": text, "heads": [[layer, head]]}).json()["heads"][0]["values"]
    assert np.allclose(shown, served, atol=2e-3)  # float16 on the wire
    assert calls == ["focus-attention.data"], \
        "focusing a head fetches that head's map, and nothing else"

    toggle = page.locator(f"[data-head={name}]")
    assert toggle.get_attribute("data-ablated") == "false"
    running.engine.released.clear()
    try:
        toggle.click()
        expect(toggle).to_have_attribute("data-ablated", "true")
        expect(page.locator("#score")).to_have_attribute("aria-busy", "true")  # the evaluation is held
        assert query_of(page.url)["off"] == [name]
        assert page.inner_text("#score") == "…" and "Computing" in page.inner_text("#score-status")

        # The page stays usable while the score is computed: focus moves at once.
        other = "L0H1" if name != "L0H1" else "L0H2"
        page.click(f"[data-focus={other}]")
        page.wait_for_function(f"document.getElementById('focus-title').innerText.startsWith('{other}')")
        assert page.get_attribute("#score", "aria-busy") == "true"
    finally:
        running.engine.released.set()

    expected = evaluate(api, [(layer, head)])
    assert settled_score(page) == f"{expected['score']:.3f}" != f"{baseline['score']:.3f}"
    assert page.input_value("#share-url") == page.url
    delta = page.inner_text("#score-delta")
    assert delta.endswith(f"{abs(expected['delta']):.3f}") and delta[0] == ("+" if expected["delta"] > 0 else "−")
    sure = expected["significance"]  # the interval and p beside the delta, the words after the p-value

    def fixed(x: float) -> str:
        return f"{0.0 if abs(x) < 5e-4 else x:.3f}"

    assert page.inner_text("#delta-ci") == f"[{fixed(sure['ci95'][0])}, {fixed(sure['ci95'][1])}]"
    p_text = "p < 0.001" if sure["p_value"] < 0.001 else f"p = {sure['p_value']:.3f}"
    assert page.inner_text("#p-value") == p_text
    words = page.inner_text("#p-words")
    assert ("no detectable change" in words) == (sure["p_value"] >= 0.05), words
    flipped = page.locator(".flipped-item")
    assert flipped.count() == len(expected["flipped"])

    # A flipped example is one click from the inspector, keeping the mask.
    elsewhere = [ex for ex in expected["flipped"] if ex != 0]
    if elsewhere:
        page.click(f"[id='{json.dumps({'flipped': elsewhere[0]}, separators=(',', ':'))}']")
        page.wait_for_function(f"new URL(location.href).searchParams.get('ex') === '{elsewhere[0]}'")
        assert query_of(page.url)["off"] == [name]
        assert settled_score(page) == f"{expected['score']:.3f}"

    # Back returns to the unmasked view.
    for _ in range(6):
        if "off" not in query_of(page.url):
            break
        before = page.url
        page.go_back()
        page.wait_for_function("before => location.href !== before", arg=before)
    page.wait_for_selector(f"[data-head={name}][data-ablated='false']", timeout=WAIT_MS)
    assert settled_score(page) == f"{baseline['score']:.3f}"
    assert errors == [], errors  # e.g. another page's callback fired here (Dash logs it, throws nothing)


def test_a_shared_link_opens_the_same_view_in_a_fresh_browser(page, browser, server: str, api: httpx.Client,
                                                               telling_head: tuple[int, int]) -> None:
    layer, head = telling_head
    name = f"L{layer}H{head}"
    page.goto(server + "/?ex=3")
    settled_score(page)
    page.click("[data-head=L2H3]")
    page.click(f"[data-head={name}]")
    page.click("[data-focus=L2H1]")
    page.click("[data-mode=uniform]")
    view = ViewState(ex=3, layer=2, head=1, off=tuple(sorted({(layer, head), (2, 3)})), mode="uniform")
    shared = f"{server}/{to_query(view)}"
    expect(page.locator("#share-url")).to_have_value(shared)
    assert page.url == shared
    expected = evaluate(api, sorted({(layer, head), (2, 3)}), mode="uniform")
    assert settled_score(page) == f"{expected['score']:.3f}"

    fresh = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        other = fresh.new_page()
        other.goto(shared)
        assert settled_score(other) == f"{expected['score']:.3f}"
        ablated = other.eval_on_selector_all("[data-ablated='true']", "els => els.map(e => e.dataset.head)")
        assert sorted(ablated) == sorted({name, "L2H3"})
        assert other.get_attribute("#head-grid", "data-focused") == "L2H1"
        assert other.get_attribute("[data-mode=uniform]", "aria-pressed") == "true"
        assert other.inner_text("#focus-title").startswith("L2H1")
        assert other.url == shared and other.input_value("#share-url") == shared
        assert "Dev example #3" in other.inner_text("#input-summary")
    finally:
        fresh.close()


def test_an_invalid_link_is_explained_and_falls_back(page, server: str, api: httpx.Client) -> None:
    page.goto(server + "/?ex=zzz&layer=99&head=1&off=L9H9,garbage,L1H1&mode=bogus&extra=1")
    banner = page.locator("#problems-banner")
    banner.wait_for(state="visible", timeout=WAIT_MS)
    text = banner.inner_text()
    for fragment in ("ex=", "layer=99", "L9H9", "'garbage'", "mode=", "'extra'"):
        assert fragment in text
    expected = evaluate(api, [(1, 1)])
    assert settled_score(page) == f"{expected['score']:.3f}"
    assert query_of(page.url) == {"ex": ["0"], "layer": ["0"], "head": ["1"], "off": ["L1H1"], "mode": ["zero"]}
    assert page.eval_on_selector_all("[data-ablated='true']", "els => els.map(e => e.dataset.head)") == ["L1H1"]
    page.click("#dismiss-problems")
    banner.wait_for(state="hidden")


def test_a_text_over_max_tokens_is_explained_and_falls_back_to_example_0(page, server: str,
                                                                         api: httpx.Client) -> None:
    max_tokens = api.get("/model").json()["max_tokens"]
    page.goto(server + "/?text=" + "+".join(["good"] * (max_tokens + 5)))
    banner = page.locator("#problems-banner")
    banner.wait_for(state="visible", timeout=WAIT_MS)
    assert str(max_tokens) in banner.inner_text()
    page.wait_for_function("new URL(location.href).searchParams.get('ex') === '0'", timeout=WAIT_MS)
    page.wait_for_selector("#input-summary :text('Dev example #0')", timeout=WAIT_MS)


def test_typed_text_is_analysed_and_exports_match_the_page(page, server: str, api: httpx.Client) -> None:
    page.goto(server + "/")
    settled_score(page)
    page.click("#text-details summary")
    page.fill("#text-input", "the plot is not good , but fun")
    page.click("#analyse-text")
    page.wait_for_function("new URL(location.href).searchParams.get('text') === 'the plot is not good , but fun'")
    expected = api.post("/attention", json={"text": "the plot is not good , but fun", "heads": []}).json()
    page.wait_for_selector(f"#input-summary :text('Prediction: {expected['prediction']['label']}')",
                           timeout=WAIT_MS)
    with page.expect_download() as download:
        page.click("#export-json")
    numbers = json.loads(Path(download.value.path()).read_text())
    assert numbers["score"] == evaluate(api, [])["score"]
    assert numbers["prediction"]["probs"] == pytest.approx(expected["prediction"]["probs"], abs=1e-6)
    assert numbers["url"] == page.url
    with page.expect_download() as download:
        page.click("[id*='\"export\":\"heatmap\"'][id*='\"format\":\"svg\"']")
    assert Path(download.value.path()).read_text().lstrip().startswith("<svg")
    with page.expect_download() as download:
        page.click("[id*='\"export\":\"grid\"'][id*='\"format\":\"png\"']")
    assert Path(download.value.path()).read_bytes().startswith(b"\x89PNG")


@settings(max_examples=1, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(STATES, min_size=300, max_size=300))
def test_the_browser_encoder_writes_the_python_links(page, server: str, states: list[ViewState]) -> None:
    """The browser's URL encoder (for clicks, which must not wait for the server) against the URL's owner,
    app/urlstate.py, on 300 of the property test's generated states."""
    page.goto(server + "/")
    settled_score(page)
    written = page.evaluate("all => all.map(v => window.dash_clientside.headscope.encodeQuery(v))",
                            [state.url_values() for state in states])
    assert written == [to_query(state) for state in states]


def test_html_export_is_one_offline_file_of_the_view(page, browser, server: str, api: httpx.Client,
                                                     tmp_path: Path) -> None:
    page.goto(server + "/?ex=3&layer=1&head=2&off=L0H1&mode=uniform")
    shown = settled_score(page)
    with page.expect_download() as download:
        page.click("#export-html")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    html_text = saved.read_text(encoding="utf-8")
    assert saved.name == "headscope-view.html"
    assert shown in html_text and "L1H2" in html_text and "heads off: L0H1" in html_text
    assert f"{evaluate(api, [(0, 1)], 'uniform')['baseline']:.3f}" in html_text
    offline = browser.new_context(offline=True)  # opens with no network: nothing is fetched
    try:
        view = offline.new_page()
        errors: list[str] = []
        view.on("pageerror", lambda error: errors.append(str(error)))
        view.goto(saved.as_uri())
        expect(view.locator(".js-plotly-plot")).to_have_count(2, timeout=WAIT_MS)  # the grid and the head
        assert errors == []
    finally:
        offline.close()


# -- the zoom and the lines window, in the link (docs/api.md, "Dashboard URL") -----------------------------
LONG = " ".join(WORDS[i % len(WORDS)] for i in range(44))  # 46 tokens with [CLS], [SEP]: more than the lines view's 40


def plotted(page, graph: str, path: str):
    """A value of a drawn figure, e.g. plotted(page, "heatmap", "_fullLayout.xaxis.range")."""
    return page.evaluate(f"document.querySelector('#{graph} .js-plotly-plot').{path}")


def shows_range(page, graph: str, rows: tuple[int, int], cols: tuple[int, int]) -> None:
    """Wait until the graph's axes show query tokens `rows` and key tokens `cols` (first, last), whole."""
    expected = [[cols[0] - 0.5, cols[1] + 0.5], [rows[1] + 0.5, rows[0] - 0.5]]  # the query axis runs down
    page.wait_for_function("([graph, expected]) => { const layout = document.querySelector(`#${graph} .js-plotly-plot`)"
                           "?._fullLayout; return layout && JSON.stringify([layout.xaxis.range, layout.yaxis.range])"
                           " === JSON.stringify(expected); }", arg=[graph, expected], timeout=WAIT_MS)


def lines_tokens(page) -> list[float]:
    """The token positions the lines view names on its left side (its query tokens)."""
    return plotted(page, "lines", "data.at(-2).y")


def test_a_zoom_link_opens_zoomed_and_the_lines_view_follows(page, server: str) -> None:
    page.goto(f"{server}/?text={quote(LONG)}&layer=1&head=2&off=L0H1&zoom=5-14,20-33")
    expect(page.locator("#focus-title")).to_contain_text("L1H2", timeout=WAIT_MS)
    expect(page.locator("#focus-panel")).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)
    assert plotted(page, "heatmap", "data[0].z.shape") == "46,46"
    for graph in ("heatmap", "diff"):
        shows_range(page, graph, (5, 14), (20, 33))
    tokens = [t.replace("\u200b", "") for t in plotted(page, "heatmap", "data[0].y")]
    labels = page.eval_on_selector_all("#heatmap .ytick text", "els => els.map(e => e.textContent)")
    assert sorted(t.replace("\u200b", "") for t in labels) == sorted(tokens[5:15])  # every zoomed query token named
    expect(page.locator("#lines-window-label")).to_have_text("tokens 5–14 of 46")
    assert lines_tokens(page) == list(range(5, 15))

    # A zoom wider than the lines view can draw legibly: its first 40 query tokens; past the input's end: cut
    # at its last token. A bad zoom is explained.
    page.goto(f"{server}/?text={quote(LONG)}&layer=1&head=2&zoom=3-47")  # the model reads 48 tokens; this input 46
    expect(page.locator("#lines-window-label")).to_have_text("tokens 3–42 of 46", timeout=WAIT_MS)
    shows_range(page, "heatmap", (3, 45), (3, 45))
    page.goto(f"{server}/?text={quote(LONG)}&layer=1&head=2&zoom=9-3")
    expect(page.locator("#problems-banner")).to_contain_text("zoom='9-3' ignored", timeout=WAIT_MS)
    expect(page.locator("#lines-window-label")).to_have_text("tokens 0–39 of 46", timeout=WAIT_MS)


def test_zooming_writes_the_link_without_refetching_and_the_slider_moves_the_window(page, server: str) -> None:
    errors = console_errors(page)
    page.goto(f"{server}/?text={quote(LONG)}&layer=1&head=2")
    expect(page.locator("#focus-panel")).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)
    expect(page.locator("#lines-window-label")).to_have_text("tokens 0–39 of 46", timeout=WAIT_MS)
    history = page.evaluate("history.length")
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(json.loads(r.post_data)["output"])
            if "_dash-update-component" in r.url else fetched.append(r.url) if "/api/" in r.url else None)

    # Drag a box on the heatmap: the link names the tokens it shows, whole; the difference view and the lines
    # view show them too; the address is replaced (no history entry) and no attention is fetched again.
    rows, cols = drag_zoom(page, (0.25, 0.2), (0.6, 0.5))
    assert 0 < rows[0] < rows[1] < 45 and 0 < cols[0] < cols[1] < 45 and rows != cols
    for graph in ("heatmap", "diff"):
        shows_range(page, graph, rows, cols)
    expect(page.locator("#lines-window-label")).to_have_text(f"tokens {rows[0]}–{rows[1]} of 46")
    assert lines_tokens(page) == list(range(rows[0], rows[1] + 1))
    assert page.evaluate("history.length") == history
    assert not [f for f in fetched if f in ("grid-attention.data", "focus-attention.data") or "/api/" in f], fetched
    assert query_of(page.input_value("#share-url"))["zoom"] == [f"{rows[0]}-{rows[1]},{cols[0]}-{cols[1]}"]

    # The slider moves the window, keeping its size, into the link (lines=); a new zoom clears it again.
    width = rows[1] - rows[0] + 1
    page.locator("#lines-window [role=slider]").first.focus()
    page.keyboard.press("End")
    expect(page.locator("#lines-window-label")).to_have_text(f"tokens {46 - width}–45 of 46")
    page.wait_for_function(f"new URLSearchParams(location.search).get('lines') === '{46 - width}-45'")
    assert lines_tokens(page) == list(range(46 - width, 46))
    shows_range(page, "heatmap", rows, cols)  # the heatmap keeps its zoom
    page.reload()  # the link reproduces both
    expect(page.locator("#lines-window-label")).to_have_text(f"tokens {46 - width}–45 of 46", timeout=WAIT_MS)
    shows_range(page, "heatmap", rows, cols)
    page.locator("#heatmap .nsewdrag").first.dblclick()
    page.wait_for_function("!new URLSearchParams(location.search).has('zoom')", timeout=WAIT_MS)
    assert "lines" not in query_of(page.url)
    expect(page.locator("#lines-window-label")).to_have_text("tokens 0–39 of 46")
    assert plotted(page, "heatmap", "_fullLayout.xaxis.autorange") is True
    assert errors == []  # Dash's renderer logs wiring errors (a cycle, a missing Input) here


# -- the rough edges of the first users' trial ------------------------------------------------------------
def test_a_too_long_typed_text_keeps_the_view_and_says_why_once(page, server: str, api: httpx.Client) -> None:
    max_tokens = api.get("/model").json()["max_tokens"]
    page.goto(server + "/?ex=2&layer=1&head=2")
    settled_score(page)
    expect(page.locator("#head-grid")).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)
    before = page.url
    page.click("#text-details summary")
    page.fill("#text-input", " ".join(["good"] * (max_tokens + 5)))
    page.click("#analyse-text")
    banner = page.locator("#problems-banner")
    expect(banner).to_be_visible(timeout=WAIT_MS)
    expect(banner.locator("li")).to_have_count(1)
    assert str(max_tokens) in banner.inner_text()
    assert page.url == before  # the previous view stays: same example, focus, mask
    expect(page.locator("#input-summary")).to_contain_text("Dev example #2")
    assert page.locator("#input-summary").inner_text().count(str(max_tokens)) == 0  # said once, in the banner
    expect(page.locator("#head-grid")).to_have_attribute("aria-busy", "false")
    assert page.evaluate("getComputedStyle(document.querySelector('[data-focus=L1H2]')).backgroundImage"
                         ".startsWith('url(')")  # the grid still shows its pictures


def test_an_empty_typed_text_says_so(page, server: str) -> None:
    page.goto(server + "/?ex=1")
    settled_score(page)
    page.click("#text-details summary")
    page.fill("#text-input", "   ")
    page.click("#analyse-text")
    expect(page.locator("#problems-banner")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#problems-banner")).to_contain_text("empty")
    assert query_of(page.url)["ex"] == ["1"]


def test_problems_go_away_after_a_later_success(page, server: str) -> None:
    page.goto(server + "/?ex=zzz&mode=bogus")
    banner = page.locator("#problems-banner")
    expect(banner).to_be_visible(timeout=WAIT_MS)
    settled_score(page)
    page.click("[data-head=L0H1]")
    expect(banner).to_be_hidden(timeout=WAIT_MS)
    page.click("#text-details summary")
    page.click("#analyse-text")  # empty: a problem again
    expect(banner).to_be_visible(timeout=WAIT_MS)
    page.click("[data-focus=L2H2]")
    expect(banner).to_be_hidden(timeout=WAIT_MS)


def test_the_picker_follows_a_flipped_example(page, server: str, api: httpx.Client,
                                              telling_head: tuple[int, int]) -> None:
    layer, head = telling_head
    flipped = [ex for ex in evaluate(api, [(layer, head)])["flipped"] if ex != 0]
    if not flipped:
        pytest.skip("the telling head flips only example 0")
    page.goto(server + f"/?ex=0&off=L{layer}H{head}")
    settled_score(page)
    page.click(f"[id='{json.dumps({'flipped': flipped[0]}, separators=(',', ':'))}']")
    expect(page.locator("#example-picker")).to_contain_text(f"#{flipped[0]} ·", timeout=WAIT_MS)
    expect(page.locator("#input-summary")).to_contain_text(f"Dev example #{flipped[0]}", timeout=WAIT_MS)


def test_one_palette_a_loss_is_red_in_every_view(page, server: str) -> None:
    from headscope.app import palette

    page.goto(server + "/?ex=0&layer=2&head=1&off=L0H1,L1H1")
    settled_score(page)
    page.wait_for_function("document.querySelector('#diff .js-plotly-plot')?.data?.[0]?.colorscale")
    scale = page.evaluate("document.querySelector('#diff .js-plotly-plot').data[0].colorscale")
    assert scale[0][1] == palette.DOWN and scale[-1][1] == palette.UP


def test_the_atlas_runs_a_sweep_and_links_heads_under_its_mask_and_mode(page, server: str,
                                                                         api: httpx.Client) -> None:
    from headscope.app import palette

    page.goto(server + "/atlas")
    expect(page.locator("#atlas-kind")).to_contain_text("Every head disabled alone", timeout=WAIT_MS)
    page.click("#atlas-run")
    expect(page.locator("#atlas-status")).to_have_text(re.compile(r"^done"), timeout=120_000)  # not "5 % done"
    source = page.inner_text("#atlas-source")
    assert "job single-head · mode zero · split dev" in source and "{" not in source
    plot = "document.querySelector('#atlas-map .js-plotly-plot')"
    page.wait_for_function(f"{plot}?.data?.length > 0")
    low, high = page.evaluate(f"{plot}._fullLayout.yaxis.range")
    assert low > high  # layer 0 on top, as in the inspector
    assert page.evaluate(f"{plot}.data[0].colorscale[0][1]") == palette.DOWN
    table = page.inner_text("#atlas-table")
    assert re.search(r"\d\.\d{5,}", table) is None, "deltas are written with 3 decimals"
    link = page.locator("#atlas-table a", has_text="L1H1").first
    assert "off=L1H1" in link.get_attribute("href") and "mode=zero" in link.get_attribute("href")
    link.click()
    page.wait_for_selector("[data-head=L1H1][data-ablated='true']", timeout=WAIT_MS)
    assert query_of(page.url)["off"] == ["L1H1"] and query_of(page.url)["mode"] == ["zero"]


# -- issue 12, 13: the measure selector and the word view ---------------------------------------------------
def dev_text(api: httpx.Client, ex: int) -> tuple[str, str | None]:
    item = api.get("/examples", params={"offset": ex, "limit": 1}).json()["items"][0]
    return item["text"], item["text_pair"]


def expected_arcs(parse: dict, answer: dict, values: np.ndarray) -> dict[int, tuple[int, bool]]:
    """Word -> (the other word of its segment it attends to most, ties to the first; right?), computed
    plainly from the API's word-level map: word k is the k-th non-special entry of `tokens`."""
    words = parse["words"]
    entries, k = [], 0
    for i, token in enumerate(answer["tokens"]):
        if k < len(words) and token == words[k]:
            entries.append(i)
            k += 1
    assert len(entries) == len(words)
    segment = [answer["segments"][e] for e in entries]
    arcs = {}
    for w, e in enumerate(entries):
        others = [v for v in range(len(words)) if v != w and segment[v] == segment[w]]
        if not others:
            continue
        target = max(others, key=lambda v: (values[e, entries[v]], -v))
        counted = parse["heads"][w] != w and parse["relations"][w] != "punct"
        arcs[w] = (target, counted and target == parse["heads"][w])
    return arcs


def drawn(page, graph: str) -> list[dict]:
    """The traces of a Plotly graph as the browser holds them (data and meta, no layout)."""
    plot = f"document.querySelector('#{graph} .js-plotly-plot')"
    page.wait_for_function(f"{plot}?.data?.some(t => t.meta && t.meta.kind === 'words')", timeout=WAIT_MS)
    return page.evaluate(f"{plot}.data.map(t => ({{meta: t.meta, color: t.line && t.line.color}}))")


@pytest.fixture(scope="module")
def telling_word_view(api: httpx.Client) -> tuple[int, int, int]:
    """An example and head whose strongest attention finds some dependency arcs and misses others, so the
    view has both kinds to mark."""
    model = api.get("/model").json()
    for ex in range(6):
        text, pair = dev_text(api, ex)
        parse = api.post("/parse", json={"text": text, "text_pair": pair}).json()
        answer = api.post("/attention", json={"text": text, "text_pair": pair, "level": "word"}).json()
        for entry in answer["heads"]:
            arcs = expected_arcs(parse, answer, np.asarray(entry["values"]))
            rights = [right for _, right in arcs.values()]
            if any(rights) and not all(rights):
                return ex, entry["layer"], entry["head"]
    pytest.fail(f"no head of the tiny model ({model['num_layers']} layers) finds some arcs and misses others")


def test_a_word_level_link_draws_the_parse_with_the_arcs_the_head_gets_right(
        page, server: str, api: httpx.Client, telling_word_view: tuple[int, int, int]) -> None:
    ex, layer, head = telling_word_view
    page.goto(server + f"/?ex={ex}&layer={layer}&head={head}&level=word")
    expect(page.locator("#word-panel")).to_be_visible(timeout=WAIT_MS)
    traces = drawn(page, "word-view")

    text, pair = dev_text(api, ex)
    parse = api.post("/parse", json={"text": text, "text_pair": pair}).json()
    answer = api.post("/attention", json={"text": text, "text_pair": pair, "level": "word",
                                          "heads": [[layer, head]]}).json()
    arcs = expected_arcs(parse, answer, np.asarray(answer["heads"][0]["values"]))
    dependency = {t["meta"]["word"]: t for t in traces if t["meta"]["kind"] == "dependency"}
    attention = {t["meta"]["word"]: t for t in traces if t["meta"]["kind"] == "attention"}
    assert {w: t["meta"]["head"] for w, t in dependency.items()} == {
        w: h for w, h in enumerate(parse["heads"]) if h != w}
    assert {w: (t["meta"]["target"], t["meta"]["right"]) for w, t in attention.items()} == arcs
    right = sorted(w for w, (_, hit) in arcs.items() if hit)
    assert right and sorted(w for w, t in dependency.items() if t["meta"]["right"]) == right
    assert {dependency[w]["color"] for w in right} == {palette.RIGHT}  # marked
    assert palette.RIGHT not in {t["color"] for w, t in dependency.items() if w not in right}
    counted = sum(1 for w, h in enumerate(parse["heads"]) if h != w and parse["relations"][w] != "punct")
    expect(page.locator("#word-summary")).to_contain_text(f"{len(right)} of {counted} dependency arcs right")
    expect(page.locator("#head-grid")).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)

    # Back to tokens: the control writes the link (level left out) and the panel goes away.
    page.click("[id*='\"param\":\"level\"'] input[value=token]")
    page.wait_for_function("!new URL(location.href).searchParams.has('level')")
    expect(page.locator("#word-panel")).to_be_hidden()
    assert page.input_value("#share-url") == page.url


@pytest.fixture(scope="module")
def slow_tokenizer_server(slow_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard and API on the tiny model saved with a slow tokenizer (no offsets mapping)."""
    folder = tmp_path_factory.mktemp("slow-dashboard")
    engine = Engine(load_model(slow_model_dir, max_tokens=48), make_task(dev=10, train=10),
                    ResultStore(folder / "results.sqlite"), batch_size=8)

    def app(url: str):
        return create_app(Settings(cache_dir=folder), engine=engine, ui=dashboard_asgi(f"{url}/api"))

    with serve_in_thread(app) as url:
        yield url


def test_a_tokenizer_without_offsets_gets_a_clear_message_in_the_word_view(page, slow_tokenizer_server: str) -> None:
    page.goto(slow_tokenizer_server + "/?ex=1&level=word")
    summary = page.locator("#word-summary")
    expect(summary).to_contain_text("offsets mapping", timeout=WAIT_MS)
    expect(summary).to_contain_text("slow tokenizer")
    expect(page.locator("#head-grid")).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)  # tokens still work
    assert page.evaluate("getComputedStyle(document.querySelector('[data-focus=L0H0]')).backgroundImage"
                         ".startsWith('url(')")


def test_the_atlas_draws_a_pairs_job_and_a_cell_opens_the_inspector_with_both_heads_off(
        page, server: str, api: httpx.Client) -> None:
    from headscope.app import palette

    page.goto(server + "/atlas")
    expect(page.locator("#atlas-kind")).to_contain_text("Every head disabled alone", timeout=WAIT_MS)
    page.click("#atlas-kind")
    page.get_by_role("option", name=re.compile("Every pair of heads")).click()
    heads = page.locator("""[id='{"job-param":"heads"}']""")
    heads.fill("L2H0,L0H1,L1H1")
    heads.press("Enter")
    expect(page.locator("#atlas-status")).to_contain_text("press Run", timeout=WAIT_MS)  # not computed yet
    page.click("#atlas-run")
    expect(page.locator("#atlas-status")).to_have_text(re.compile(r"^done"), timeout=120_000)  # not "5 % done"
    source = page.inner_text("#atlas-source")
    assert "job pairs · mode zero · split dev" in source and "heads L0H1,L1H1,L2H0" in source
    job_id = source.split("GET /api/jobs/")[1].split(":")[0]
    result = api.get(f"/jobs/{job_id}").json()["result"]
    plot = "document.querySelector('#atlas-map .js-plotly-plot')"
    page.wait_for_function(f"{plot}?.data?.length === 4")
    assert page.evaluate(f"{plot}.data[0].y") == ["L0H1", "L1H1", "L2H0"]  # heads in layer order, L0 on top
    np.testing.assert_allclose(page.evaluate(f"{plot}.data[2].z"), result["delta"])
    survivors = sum(bool(result["interaction_significant"][i][j]) for i in range(3) for j in range(i + 1, 3))
    title = page.evaluate(f"{plot}.layout.title.text")
    assert f"interaction: {survivors} of 3 survive Holm's correction" in title
    assert page.evaluate(f"{plot}._fullLayout.coloraxis.colorscale[0][1]") == palette.DOWN
    # a click on the interaction cell of L0H1 (row) and L2H0 (column) offers both heads off, in the mode
    page.locator("#atlas-map").scroll_into_view_if_needed()
    x, y = page.evaluate(f"""(() => {{ const gd = {plot}, box = gd.getBoundingClientRect(), l = gd._fullLayout;
        return [box.left + l.xaxis._offset + l.xaxis.l2p(2), box.top + l.yaxis._offset + l.yaxis.l2p(0)]; }})()""")
    page.mouse.click(x, y)
    expect(page.locator("#atlas-focus")).to_contain_text("L0H1 and L2H0 off (zero)", timeout=WAIT_MS)
    page.click("#atlas-open-head")
    page.wait_for_selector("[data-head=L2H0][data-ablated='true']", timeout=WAIT_MS)
    assert page.locator("[data-head=L0H1][data-ablated='true']").count() == 1
    query = query_of(page.url)
    assert (query["layer"], query["head"], query["off"], query["mode"]) == (["0"], ["1"], ["L0H1,L2H0"], ["zero"])


def shown_heatmap(page) -> np.ndarray:
    """The focused heatmap's numbers as the browser holds them (packed float32)."""
    page.wait_for_function("document.querySelector('#heatmap .js-plotly-plot')?.data?.[0]?.z?.bdata")
    packed = page.evaluate("document.querySelector('#heatmap .js-plotly-plot').data[0].z")
    return np.frombuffer(base64.b64decode(packed["bdata"]), "<f4").reshape(
        [int(side) for side in packed["shape"].split(",")])


def pictured(page) -> list[str]:
    """The heads whose grid picture shows: the grid's one picture is drawn and the head's cell is visible."""
    expect(page.locator("#head-grid")).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)
    assert page.evaluate("getComputedStyle(document.getElementById('head-grid'))"
                         ".getPropertyValue('--thumbs').trim().startsWith('url(')")
    return page.eval_on_selector_all(
        "[data-focus]",
        "els => els.filter(e => getComputedStyle(e).visibility === 'visible').map(e => e.dataset.focus)")


def test_a_norm_link_draws_what_each_head_moves_on_its_own_scale(page, server: str, api: httpx.Client) -> None:
    text, pair = dev_text(api, 2)
    page.goto(server + "/?ex=2&layer=1&head=1&mode=zero&measure=norm")
    expect(page.locator("#head-grid")).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)
    norm = api.post("/attention", json={"text": text, "text_pair": pair, "measure": "norm",
                                        "heads": [[1, 1]]}).json()["heads"][0]["values"]
    shown = shown_heatmap(page)
    weights = api.post("/attention", json={"text": text, "text_pair": pair, "heads": [[1, 1]]}).json()
    assert not np.allclose(np.asarray(norm), weights["heads"][0]["values"], atol=1e-2)  # so the check can fail
    assert np.allclose(shown, norm, rtol=2e-3, atol=2e-3)  # float16 on the wire
    expect(page.locator("#focus-title")).to_contain_text("norm, this head's scale: max ")
    scale = re.search(r"max ([0-9.e+-]+)", page.inner_text("#focus-title"))[1]
    assert float(scale) == pytest.approx(np.max(norm), rel=5e-3)  # the scale shown is this head's largest
    assert "norm" in page.evaluate("document.querySelector('#heatmap .js-plotly-plot').data[0].colorbar.title.text")
    assert page.is_checked("[id*='\"param\":\"measure\"'] input[value=norm]")
    model = api.get("/model").json()
    assert len(pictured(page)) == model["num_layers"] * model["num_heads"]

    # A head disabled in zero mode moves nothing: its map is all 0 and the focus says so.
    page.click("[data-head=L1H1]")
    page.wait_for_function("new URL(location.href).searchParams.get('off') === 'L1H1'")
    expect(page.locator("#focus-title")).to_contain_text("moves nothing", timeout=WAIT_MS)
    expect(page.locator("#heatmap")).to_contain_text("moves nothing")
    assert "measure=norm" in page.input_value("#share-url")


def test_a_rollout_link_draws_one_map_per_layer_and_the_focus_follows_the_layer(page, server: str,
                                                                               api: httpx.Client) -> None:
    text, pair = dev_text(api, 2)
    page.goto(server + "/?ex=2&layer=2&head=3&off=L1H1&measure=rollout")
    expect(page.locator("#head-grid")).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)
    answer = api.post("/attention", json={"text": text, "text_pair": pair, "measure": "rollout",
                                          "ablate": [[1, 1]], "mode": "zero"}).json()
    rollout = {entry["layer"]: np.asarray(entry["values"]) for entry in answer["layers"]}
    assert np.allclose(shown_heatmap(page), rollout[2], atol=2e-3)
    expect(page.locator("#focus-title")).to_contain_text("rollout up to layer 2")
    model = api.get("/model").json()
    assert pictured(page) == [f"L{layer}H0" for layer in range(model["num_layers"])]  # one map per layer

    assert page.get_attribute("#head-grid", "data-measure") == "rollout"
    page.click("[data-focus=L0H0]")
    expect(page.locator("#focus-title")).to_contain_text("rollout up to layer 0", timeout=WAIT_MS)
    assert np.allclose(shown_heatmap(page), rollout[0], atol=2e-3)
    assert query_of(page.url)["layer"] == ["0"] and query_of(page.url)["head"] == ["3"]  # the head is kept
    # Back to weights: the same head's weights again, the measure gone from the link.
    page.click("[id*='\"param\":\"measure\"'] input[value=weights]")
    page.wait_for_function("!new URL(location.href).searchParams.has('measure')")
    expect(page.locator("#focus-title")).to_contain_text("L0H3", timeout=WAIT_MS)
