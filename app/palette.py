"""The product's one palette: every colour the dashboard uses, defined here once.

Python figures (the atlas) use these values directly; the stylesheet reads them as CSS variables that the
page shell sets (`css_variables`); the browser's drawing code (heatmaps, thumbnails, the difference view)
reads the colour scales from the shell's `data-palette` attribute. One meaning each: red is "less" (a
drop in score, attention lost, a disabled head), blue is "more" and the accent.
"""

from __future__ import annotations

import json

INK = "#1d2430"
MUTED = "#5d6675"
LINE = "#d9dee7"
PANEL = "#ffffff"
PAGE = "#f3f5f8"
ACCENT = "#1f4fb4"
ACCENT_SOFT = "#e3ebfb"
DOWN = "#b3261e"  # less: a score that drops, attention lost; also a disabled head
DOWN_SOFT = "#fbe9e7"
UP = "#1f4fb4"  # more: a score that rises, attention gained
NEUTRAL = "#bbbbbb"  # neither: a change that does not survive a significance test
RIGHT = "#1a7f37"  # a dependency arc the focused head gets right (the word view)
NOTICE = "#fff6e0"
NOTICE_LINE = "#e7c66b"
TOPBAR = "#16213a"

# Attention weights, 0 (white) to the largest (dark blue).
SEQUENTIAL = [[0, "#ffffff"], [0.15, "#dce6f7"], [0.4, "#8fb0e6"], [0.7, "#3867c4"], [1, "#0c2c7a"]]
# Signed changes: negative (less) red, 0 white, positive (more) blue.
DIVERGING = [[0, DOWN], [0.25, "#ef9a8f"], [0.5, "#ffffff"], [0.75, "#8fb0e6"], [1, UP]]


def css_variables() -> dict[str, str]:
    """The colours as CSS custom properties, for the page shell's style (headscope.css uses them)."""
    return {"--ink": INK, "--muted": MUTED, "--line": LINE, "--panel": PANEL, "--page": PAGE, "--accent": ACCENT,
            "--accent-soft": ACCENT_SOFT, "--off": DOWN, "--off-soft": DOWN_SOFT, "--up": UP, "--down": DOWN,
            "--notice": NOTICE, "--notice-line": NOTICE_LINE, "--topbar": TOPBAR}


def for_browser() -> str:
    """What the browser's drawing code needs, as JSON (the shell's `data-palette`)."""
    return json.dumps({"sequential": SEQUENTIAL, "diverging": DIVERGING, "down": DOWN, "muted": MUTED})
