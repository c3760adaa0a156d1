"""The registry of dashboard pages: add a page by importing its module and listing its PAGE here."""

from __future__ import annotations

from headscope.app import atlas, inspector, layers
from headscope.app.page import Page

PAGES: tuple[Page, ...] = (inspector.PAGE, layers.PAGE, atlas.PAGE)
