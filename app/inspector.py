"""The inspector page (path "/"): one input, every head's attention, heads switched off, the score.

Where things live: the layout in layout.py (structure only); the URL, the page's state, in urlstate.py
(its format) and state_callbacks.py (how it changes: clicks in the browser, links and typed text checked
on the server); attention fetched and drawn in attention_callbacks.py; the zoom and the lines view's
window in view_callbacks.py; the focused head over words in
word_callbacks.py; the score panel and flipped list in score_callbacks.py (mean mode's means job:
means_callbacks.py); the input panel in input_callbacks.py; downloads in export_callbacks.py; colours in
palette.py; number formats in formatting.py; what must run in the browser in static/headscope.js.
"""

from __future__ import annotations

from dash import Dash
from dash.development.base_component import Component
from headscope.app import (
    attention_callbacks,
    export_callbacks,
    input_callbacks,
    means_callbacks,
    score_callbacks,
    state_callbacks,
    view_callbacks,
    word_callbacks,
)
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.layout import inspector_layout, unavailable_layout
from headscope.app.page import Page


def layout(api: ApiClient) -> Component:
    """Built per visit from `/api/model`, so the grid has the loaded model's shape."""
    try:
        info = api.model()
    except ApiError as exc:
        return unavailable_layout(api.base_url, exc.message)
    return inspector_layout(info)


def register_callbacks(app: Dash, api: ApiClient) -> None:
    for module in (state_callbacks, attention_callbacks, score_callbacks, means_callbacks, input_callbacks,
                   export_callbacks, word_callbacks, view_callbacks):
        module.register(app, api)


PAGE = Page(slug="", title="Inspector", layout=layout, register_callbacks=register_callbacks)
