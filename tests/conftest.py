"""Shared fixtures: tiny BERT-family classifiers saved with `save_pretrained` and loaded back through
headscope's production loader, a small task, engines over them, a spaCy parser, a browser page. Builders live in
tests/helpers.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from headscope.engine.engine import Engine
from headscope.engine.model import LoadedModel, load_model
from headscope.engine.store import ResultStore
from headscope.engine.tasks import Task
from headscope.engine.words import Parser
from transformers import BertTokenizerLegacy

from tests.helpers import KINDS, build_model_dir, make_task


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny saved classifier per family, and ModernBERT pooling the first token as "modernbert-cls"
    (built once per session, a few seconds each; shared by the families' and the layers' tests)."""
    root = tmp_path_factory.mktemp("families")
    dirs = {kind: build_model_dir(root / kind, kind=kind, seed=3, train_steps=12) for kind in KINDS}
    dirs["modernbert-cls"] = build_model_dir(root / "modernbert-cls", kind="modernbert", seed=4, train_steps=12,
                                             classifier_pooling="cls")
    return dirs


@pytest.fixture(scope="session")
def family_models(family_dirs: dict[str, Path]) -> dict[str, LoadedModel]:
    return {kind: load_model(directory, max_tokens=48) for kind, directory in family_dirs.items()}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> LoadedModel:
    return load_model(tiny_model_dir, max_tokens=48)


@pytest.fixture
def tiny_task() -> Task:
    return make_task()


@pytest.fixture
def engine(tiny_model: LoadedModel, tiny_task: Task, tmp_path: Path) -> Engine:
    return Engine(tiny_model, tiny_task, ResultStore(tmp_path / "results.sqlite"), batch_size=8)


@pytest.fixture(scope="session")
def parser() -> Parser:
    """spaCy's English pipeline, loaded once for the session (about 1.5 s) and before any test times a
    request."""
    parser = Parser()
    parser.parse("loaded")
    return parser


@pytest.fixture
def word_engine(engine: Engine, parser: Parser) -> Engine:
    """The tiny engine with the session's parser, for word-level requests."""
    engine.parser = parser
    return engine


@pytest.fixture(scope="session")
def slow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a slow (Python) tokenizer: no tokenizer.json, so no offsets mapping."""
    directory = build_model_dir(tmp_path_factory.mktemp("slow"), train_steps=0)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (directory / name).unlink(missing_ok=True)
    shutil.copy(directory / "vocab.txt", directory / "vocab.bak")
    BertTokenizerLegacy(str(directory / "vocab.bak")).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium for one module's browser tests (launched the one way, bench/browser.py)."""
    from bench.browser import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def viewport() -> dict[str, int]:
    """The browser window of :func:`page`; a module overrides this fixture for another size."""
    return {"width": 1280, "height": 800}


@pytest.fixture
def page(browser, viewport: dict[str, int]) -> Iterator[object]:
    """A page in a fresh browser context (no shared storage), failing the test on any script error."""
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors
