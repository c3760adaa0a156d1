"""Attention for the current input and mask, fetched in two sizes and drawn in the browser.

`deriveRequests` turns the URL into the canonical query of what each fetch depends on:
- `grid-request` (input and mask) -> `grid-attention`: every head as a pooled thumbnail (`format:
  "thumb"`, docs/api.md), about 1 MB for 384 heads at 512 tokens, fetched once per input and mask;
- `focus-request` (input, mask and focus) -> `focus-attention`: the focused head's full map, and the
  same head unmasked when heads are off (for the difference view). Moving the focus fetches this one
  head only; the grid is not fetched again.
The server side passes the API's answer text through untouched (no decoding in the Dash process); the
thumbnails, the heatmap, the lines and the difference view are drawn from it by static/headscope.js.
Every map request is built by `attention_answer`: a new request field (a measure, say) goes there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dash import ALL, Dash, Input, Output, State
from dash.exceptions import PreventUpdate
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.clientside import js
from headscope.app.urlstate import ModelShape, ViewState, parse_query

Payload = dict[str, Any]
THUMB_SIZE = 32  # each grid picture is at most this many rows and columns (the API's default)


def input_of(api: ApiClient, state: ViewState, model_info: Payload) -> tuple[str, str | None]:
    """The text (and pair) a state names: its own, or dev example `ex` looked up through the API."""
    if state.ex is None:
        return state.text or "", state.pair
    example = api.dev_example(model_info["fingerprint"], state.ex)
    return example["text"], example["text_pair"]


def request_state(request: str | None, model_info: Payload | None) -> ViewState:
    """A request key (a canonical query made by the page) -> its state. Before the page has made one, or
    without the model's description, there is nothing to show: PreventUpdate (every callback that follows a
    request starts here)."""
    if request is None or not model_info:
        raise PreventUpdate
    return parse_query(request, ModelShape.from_model_info(model_info))[0]


def attention_answer(api: ApiClient, state: ViewState, model_info: Payload, *, fmt: str,
                     heads: Sequence[Sequence[int]] | None, masked: bool = True) -> str:
    """The one place the inspector asks `/api/attention` for maps: the state's input under its mask (or
    with nothing disabled, `masked=False`), in the state's measure and `fmt`, for `heads` (None: every head).
    Rollout is per layer (docs/api.md, "Attention measures"): every layer's map, whatever `heads` says.
    The answer text."""
    text, pair = input_of(api, state, model_info)
    ablate, mode = (state.off, state.mode) if masked else ((), "zero")
    size = THUMB_SIZE if fmt == "thumb" else None
    heads = None if state.measure == "rollout" else heads
    return api.attention_text(text, pair, ablate, mode, fmt=fmt, heads=heads, size=size, measure=state.measure)


def make_fetch_grid(api: ApiClient):
    def fetch_grid(request: str | None, model_info: Payload | None) -> Payload:
        """grid-request -> every head's thumbnail under the mask, as the API's answer text."""
        state = request_state(request, model_info)
        try:
            masked = attention_answer(api, state, model_info, fmt="thumb", heads=None)
        except ApiError as exc:
            return {"request": request, "masked": None, "error": exc.message}
        return {"request": request, "masked": masked, "error": None}

    return fetch_grid


def make_fetch_focus(api: ApiClient):
    def fetch_focus(request: str | None, model_info: Payload | None) -> Payload:
        """focus-request -> the focused head's full map under the mask, and unmasked when heads are off."""
        state = request_state(request, model_info)
        heads = [[state.layer, state.head]]
        try:
            masked = attention_answer(api, state, model_info, fmt="f16", heads=heads)
            baseline = (attention_answer(api, state, model_info, fmt="f16", heads=heads, masked=False)
                        if state.off else None)
        except ApiError as exc:
            return {"request": request, "masked": None, "baseline": None, "error": exc.message}
        return {"request": request, "masked": masked, "baseline": baseline, "error": None}

    return fetch_focus


def register(app: Dash, api: ApiClient) -> None:
    app.clientside_callback(js("deriveRequests"), Output("grid-request", "data"), Output("focus-request", "data"),
                            Output("evaluate-request", "data"), Output("head-grid", "aria-busy", allow_duplicate=True),
                            Output("score", "children", allow_duplicate=True),
                            Output("score", "aria-busy", allow_duplicate=True),
                            Output("score-status", "children", allow_duplicate=True),
                            Output("score-request", "data", allow_duplicate=True),
                            Input("page-search", "data"), State("grid-request", "data"),
                            State("focus-request", "data"), State("evaluate-request", "data"),
                            prevent_initial_call=True)
    app.callback(Output("grid-attention", "data"), Input("grid-request", "data"), State("model-info", "data"),
                 prevent_initial_call=True)(make_fetch_grid(api))
    app.callback(Output("focus-attention", "data"), Input("focus-request", "data"), State("model-info", "data"),
                 prevent_initial_call=True)(make_fetch_focus(api))
    app.clientside_callback(js("drawThumbnails"), Output("head-grid", "style"), Output("head-grid", "aria-busy"),
                            Output("head-grid", "data-measure"), Output("head-grid", "data-drawn"),
                            Input("grid-attention", "data"), Input("grid-request", "data"), State("head-grid", "style"))
    app.clientside_callback(js("drawFocus"), Output("heatmap", "figure"), Output("diff", "figure"),
                            Output("focus-title", "children"), Output("focus-panel", "aria-busy"),
                            Output("focus-panel", "data-drawn"),
                            Input("focus-attention", "data"), Input("focus-request", "data"),
                            State("view-request", "data"))  # drawn at the link's zoom (view_callbacks.py)
    # Batch work waits for the picture: page-drawn (the picker's first page) and score-request (the score on all
    # of dev) are set once the grid and the focused head of the current input and mask are drawn. Server
    # callbacks take these small strings, never the attention stores (about 1 MB each at BERT-large's size,
    # over the server's request body limit).
    app.clientside_callback(js("afterDrawing"), Output("page-drawn", "data"),
                            Output("score-request", "data", allow_duplicate=True),
                            Input("head-grid", "data-drawn"), Input("focus-panel", "data-drawn"),
                            State("evaluate-request", "data"), State("page-drawn", "data"),
                            State("score-request", "data"), prevent_initial_call=True)
    # The mask's look follows evaluate-request, which changes only when the mask or mode does, so moving
    # the focus leaves the grid's many toggles alone.
    app.clientside_callback(
        js("styleMask"),
        Output({"layer-toggle": ALL}, "className"),
        Output({"mode-button": ALL}, "className"), Output({"mode-button": ALL}, "aria-pressed"),
        Output("mask-summary", "children"), Output("reset-mask", "disabled"),
        Input("evaluate-request", "data"), State("model-info", "data"),
    )
