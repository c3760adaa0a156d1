"""The one way this repository starts a browser: Debian's headless Chromium driven by Playwright.

Shared by the end-to-end tests (tests/test_dashboard_e2e.py) and the README screenshot
(`python -m bench.screenshot`). Playwright's own browser download is not used (it fails offline);
without these flags Chromium's background connections are refused and it waits on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def chromium(executable: Path = CHROMIUM) -> Iterator[Any]:
    """A launched headless Chromium (a Playwright `Browser`), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
