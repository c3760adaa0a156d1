"""The Layers page in a real headless Chromium against a real server (API + UI in one uvicorn process):
a link with a mask draws both charts from the API's numbers, the scatter of the link's state and pooling
(the slider writes them back into the link), and a point opens its example in the inspector with the
same mask, mode and scatter state."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from headscope.api.app import create_app
from headscope.engine.engine import Engine
from headscope.engine.model import LoadedModel
from headscope.engine.store import ResultStore
from headscope.server import dashboard_asgi, serve_in_thread
from headscope.settings import Settings

from tests.helpers import BROWSER_TEST, console_errors, make_task

WAIT_MS = 120_000  # two layers jobs on a busy 2-core machine

pytestmark = [*BROWSER_TEST]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def server(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("layers-page")
    engine = Engine(tiny_model, make_task(dev=40, train=30), ResultStore(folder / "results.sqlite"), batch_size=8)

    def app(url: str):
        return create_app(Settings(cache_dir=folder), engine=engine, ui=dashboard_asgi(f"{url}/api"))

    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def viewport() -> dict[str, int]:
    """Taller than conftest's page: both charts and the scatter in view."""
    return {"width": 1280, "height": 1000}


def test_a_masked_link_draws_both_charts_and_a_point_opens_the_inspector(page, server: str) -> None:
    off, mode = "L1H0,L1H2,L2H1", "uniform"
    errors = console_errors(page)
    page.goto(f"{server}/layers?off={off}&mode={mode}&state=2&pooling=mean")
    expect(page.locator("#layers-mask")).to_contain_text("L1H0, L1H2, L2H1", timeout=WAIT_MS)
    # the lines: lens and probe, with the mask and unablated (4 traces), once both jobs are done
    expect(page.locator("#layers-lines .scatterlayer .trace")).to_have_count(4, timeout=WAIT_MS)
    with httpx.Client(base_url=f"{server}/api", timeout=60) as api:
        jobs = {job["params"]["mode"]: job for job in api.get("/jobs").json()["jobs"] if job["kind"] == "layers"}
        masked = api.get(f"/jobs/{jobs[mode]['id']}").json()["result"]
        assert masked["ablate"] == [[1, 0], [1, 2], [2, 1]] and None in jobs  # the unablated job beside it
        scatter = api.post("/representations", json={"layer": 2, "ablate": masked["ablate"], "mode": mode,
                                                      "pooling": "mean"}).json()
    # every state is a point on each line
    for trace in range(4):
        expect(page.locator("#layers-lines .scatterlayer .trace").nth(trace).locator(".point")).to_have_count(4)
    # the scatter of the link's state and pooling: every dev example is a point
    points = page.locator("#layers-pca .scatterlayer .point")
    expect(points).to_have_count(len(scatter["points"]), timeout=WAIT_MS)
    wrong = sum(p["label"] != p["predicted"] for p in scatter["points"])
    source = page.locator("#layers-pca-source")
    expect(source).to_contain_text(f"state 2, mean pooling, {scatter['n']} dev examples", timeout=WAIT_MS)
    expect(source).to_contain_text(f"{wrong} predicted wrong", timeout=WAIT_MS)
    slider = page.get_by_role("slider")
    expect(slider).to_have_attribute("aria-valuenow", "2")
    # moving the slider writes its state into the link
    slider.focus()
    slider.press("ArrowLeft")
    page.wait_for_url(re.compile(r"[?&]state=1(&|$)"), timeout=WAIT_MS)
    expect(source).to_contain_text("state 1, mean pooling", timeout=WAIT_MS)
    assert parse_qs(urlsplit(page.url).query)["pooling"] == ["mean"]

    # a click on a point opens that example in the inspector, with the same mask and mode
    box = points.first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    hover = page.locator("#layers-pca .hoverlayer .hovertext")
    expect(hover).to_contain_text("example ", timeout=WAIT_MS)
    example = int(re.search(r"example (\d+)", hover.first.text_content())[1])
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url("**/?ex=*", timeout=WAIT_MS)
    query = parse_qs(urlsplit(page.url).query)
    assert query["off"] == [off] and query["mode"] == [mode] and query["ex"] == [str(example)]
    assert query["state"] == ["1"] and query["pooling"] == ["mean"]  # kept for the way back
    expect(page.locator("#score")).to_be_visible(timeout=WAIT_MS)
    # and the inspector links back to this page for its current state
    link = page.locator("#layers-link")
    expect(link).to_have_attribute("href", re.compile(rf"/layers\?ex={example}&.*off={off}&mode={mode}"),
                                   timeout=WAIT_MS)
    link.click()
    page.wait_for_url(re.compile(rf"/layers\?ex={example}&"), timeout=WAIT_MS)
    expect(page.locator("#layers-mask")).to_contain_text("L1H0, L1H2, L2H1", timeout=WAIT_MS)
    expect(page.locator("#layers-pca-source")).to_contain_text("state 1, mean pooling", timeout=WAIT_MS)
    expect(page.get_by_role("slider")).to_have_attribute("aria-valuenow", "1")
    assert errors == [], errors  # neither page's callbacks fired on the other (Dash logs that as an error)
