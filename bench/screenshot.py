"""Take the README's screenshot of a running dashboard with the same headless Chromium as the tests.

    python -m bench.screenshot --url "http://127.0.0.1:8000/?ex=0&layer=4&head=1&off=L1H4&mode=zero" \\
        --out docs/screenshot.png

It waits until the score and the head grid are no longer busy and the heatmap is drawn, so the picture
shows real numbers. A developer tool: it is not part of the installed package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.browser import CHROMIUM, chromium


def take_screenshot(url: str, out: Path, *, width: int = 1280, height: int = 800, full_page: bool = False,
                    timeout_s: float = 300.0, executable: Path = CHROMIUM) -> Path:
    """Open `url`, wait for the page to settle, and save a PNG to `out`."""
    from playwright.sync_api import expect

    with chromium(executable) as browser:
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        for selector in ("#score", "#head-grid"):
            expect(page.locator(selector)).to_have_attribute("aria-busy", "false", timeout=timeout_s * 1000)
        expect(page.locator("#heatmap .main-svg").first).to_be_visible(timeout=timeout_s * 1000)
        page.evaluate("() => new Promise(requestAnimationFrame)")  # one frame, so Plotly has painted
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=full_page, animations="disabled")
    return out


def main(
    url: Annotated[str, typer.Option(help="The dashboard view to capture (a shareable link).")],
    out: Annotated[Path, typer.Option(help="Where the PNG goes.")] = Path("docs/screenshot.png"),
    width: Annotated[int, typer.Option(min=640)] = 1280,
    height: Annotated[int, typer.Option(min=480)] = 800,
    full_page: Annotated[bool, typer.Option(help="The whole scrolling page, not just the window.")] = False,
    executable: Annotated[Path, typer.Option(help="The Chromium executable.")] = CHROMIUM,
) -> None:
    """Save a screenshot of the dashboard at URL."""
    path = take_screenshot(url, out, width=width, height=height, full_page=full_page, executable=executable)
    typer.echo(f"saved {path}")


if __name__ == "__main__":
    typer.run(main)
