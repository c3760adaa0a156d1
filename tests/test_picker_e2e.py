"""The example picker on a task with many dev examples, in a real Chromium against a real server: it offers a
page at a time and searches through `/api/examples`, never the whole split, and opening a found example puts
it in the address (`ex=`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from headscope.api.app import create_app
from headscope.app.input_callbacks import PICKER_PAGE
from headscope.engine.engine import Engine
from headscope.engine.model import LoadedModel
from headscope.engine.store import ResultStore
from headscope.engine.tasks import Task
from headscope.server import dashboard_asgi, serve_in_thread
from headscope.settings import Settings

from tests.helpers import BROWSER_TEST, make_task

pytestmark = [*BROWSER_TEST]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
WAIT_MS = 30_000
DEV = 1000
FOUND = 934  # the one example with the word searched for
WORD = "quixotic"  # in no generated sentence; the test tokenizer spells it in letters


class CountingEngine(Engine):
    """The real engine, counting the examples `/api/examples` pages asked for."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.paged: list[int] = []

    def examples(self, split, offset, count, query=None):
        total, items = super().examples(split, offset, count, query)
        self.paged.extend(item["id"] for item in items)
        return total, items


@dataclass
class Server:
    url: str
    engine: CountingEngine


def many_examples() -> Task:
    task = make_task(dev=DEV, train=0)
    dev = list(task.splits["dev"])
    dev[FOUND] = replace(dev[FOUND], text=f"the {WORD} plot was fun")
    return Task(name="many", labels=task.labels, metric=task.metric, splits={"dev": dev})


@pytest.fixture(scope="module")
def running(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("picker")
    engine = CountingEngine(tiny_model, many_examples(), ResultStore(folder / "results.sqlite"), batch_size=64)

    def app(url: str):
        return create_app(Settings(cache_dir=folder), engine=engine, ui=dashboard_asgi(f"{url}/api"))

    with serve_in_thread(app) as url:
        yield Server(url, engine)


def test_the_picker_searches_the_split_and_opens_what_it_finds(page, running: Server) -> None:
    page.goto(running.url + "/?ex=7")
    picker = page.locator("#example-picker")
    expect(picker).to_contain_text("#7 ·", timeout=WAIT_MS)
    picker.click()
    options = page.locator(".dash-dropdown-option")
    expect(options.first).to_be_visible(timeout=WAIT_MS)
    assert options.count() <= PICKER_PAGE + 1  # a page (and the chosen example), not all 1,000
    page.locator(".dash-dropdown-search").fill(WORD.upper()[:6])  # "QUIXOT": part of a word, any case
    found = options.filter(has_text=f"#{FOUND} ·")
    expect(found).to_be_visible(timeout=WAIT_MS)
    expect(options).to_have_count(1, timeout=WAIT_MS)
    found.click()
    expect(page).to_have_url(re.compile(rf"[?&]ex={FOUND}(&|$)"), timeout=WAIT_MS)
    expect(page.locator("#input-summary")).to_contain_text(f"Dev example #{FOUND}", timeout=WAIT_MS)
    expect(page.locator("#input-summary")).to_contain_text(f"{WORD} plot was fun", timeout=WAIT_MS)
    assert len(set(running.engine.paged)) < 3 * PICKER_PAGE  # pages and single examples only


def test_typing_an_id_offers_that_example(page, running: Server) -> None:
    page.goto(running.url + "/?ex=2")
    picker = page.locator("#example-picker")
    expect(picker).to_contain_text("#2 ·", timeout=WAIT_MS)
    picker.click()
    page.locator(".dash-dropdown-search").fill("#900")
    found = page.locator(".dash-dropdown-option").filter(has_text="#900 ·")
    expect(found).to_be_visible(timeout=WAIT_MS)
    found.click()
    expect(page).to_have_url(re.compile(r"[?&]ex=900(&|$)"), timeout=WAIT_MS)
