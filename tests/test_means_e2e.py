"""Mean mode on a model whose means are not computed yet, in a real Chromium against a real server: the page
shows the `means` job's progress under a busy score, then the score itself (the API's own number)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from headscope.api.app import create_app
from headscope.engine.engine import Engine
from headscope.engine.model import LoadedModel
from headscope.engine.store import ResultStore
from headscope.server import dashboard_asgi, serve_in_thread
from headscope.settings import Settings

from tests.helpers import BROWSER_TEST, make_task
from tests.test_scheduling import hold

WAIT_MS = 60_000

pytestmark = [*BROWSER_TEST]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


def test_mean_mode_without_means_shows_the_job_progress_then_the_score(page, tiny_model: LoadedModel,
                                                                        tmp_path: Path) -> None:
    engine = Engine(tiny_model, make_task(dev=40, train=30), ResultStore(tmp_path / "results.sqlite"), batch_size=8)
    apps = []

    def make_app(url: str):
        apps.append(create_app(Settings(cache_dir=tmp_path), engine=engine, ui=dashboard_asgi(f"{url}/api")))
        return apps[0]

    with serve_in_thread(make_app) as url:
        holder, release = hold(apps[0].state.gate)  # a chunk in progress: the means can not start yet
        try:
            page.goto(f"{url}/?off=L1H2&mode=mean")
            status = page.locator("#means-status")
            expect(status).to_contain_text("over the 30 train examples; computing those means", timeout=WAIT_MS)
            expect(page.locator("#means-progress-text")).to_have_text("0 % done", timeout=WAIT_MS)
            expect(page.locator("#means-progress")).to_have_attribute("value", "0.000")
            expect(page.locator("#score")).to_have_attribute("aria-busy", "true")
            assert not engine.has_head_means()
        finally:
            release.set()
            holder.join(60)
        expect(page.locator("#score")).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)
        expect(status).to_have_text("")
        assert engine.has_head_means()
        with httpx.Client(base_url=f"{url}/api", timeout=60) as api:
            expected = api.post("/evaluate", json={"ablate": [[1, 2]], "mode": "mean"}).json()
            jobs = api.get("/jobs").json()["jobs"]
        assert expected["cached"] is True and expected["mode"] == "mean"  # the page's request stored it
        expect(page.locator("#score")).to_have_text(f"{expected['score']:.3f}")
        assert [j["state"] for j in jobs if j["kind"] == "means"] == ["done"]
