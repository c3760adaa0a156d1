"""Take the README's screenshot of a running dashboard with the same headless Chromium as the tests.

    python -m app.screenshot --url "http://127.0.0.1:8000/?ex=0&layer=4&head=1&off=L1H4&mode=zero" \\
        --out static/screenshot.png

It waits until the score and the head grid are no longer busy, so the picture shows real numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def take_screenshot(url: str, out: Path, *, width: int = 1280, height: int = 800, full_page: bool = False,
                    timeout_s: float = 300.0, chromium: str = CHROMIUM) -> Path:
    """Open `url`, wait for the page to settle, and save a PNG to `out`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            for selector in ("#score[aria-busy='false']", "#head-grid[aria-busy='false']"):
                page.wait_for_selector(selector, timeout=timeout_s * 1000)
            page.wait_for_selector("#heatmap .main-svg", timeout=timeout_s * 1000)
            page.wait_for_timeout(800)  # let Plotly finish its transitions
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=full_page)
        finally:
            browser.close()
    return out


def main(
    url: Annotated[str, typer.Option(help="The dashboard view to capture (a shareable link).")],
    out: Annotated[Path, typer.Option(help="Where the PNG goes.")] = Path("static/screenshot.png"),
    width: Annotated[int, typer.Option(min=640)] = 1280,
    height: Annotated[int, typer.Option(min=480)] = 800,
    full_page: Annotated[bool, typer.Option(help="The whole scrolling page, not just the window.")] = False,
    chromium: Annotated[str, typer.Option(help="The Chromium executable.")] = CHROMIUM,
) -> None:
    """Save a screenshot of the dashboard at URL."""
    path = take_screenshot(url, out, width=width, height=height, full_page=full_page, chromium=chromium)
    typer.echo(f"saved {path}")


if __name__ == "__main__":
    typer.run(main)
