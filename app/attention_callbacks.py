"""Attention for the current input and mask: fetched once per input and mask, drawn in the browser.

`deriveRequests` turns the URL into `attention-request` and `evaluate-request` (the canonical query of
what each depends on), so moving the focus fetches nothing. The server side asks the API for every head
in float16 and passes the API's answer text through untouched (no decoding in the Dash process); with
heads disabled it also fetches the unablated answer for the difference view. Thumbnails, the focused
heatmap, the lines and the difference view are drawn from that by static/headscope.js.
"""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State
from dash.exceptions import PreventUpdate
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.clientside import js
from headscope.app.urlstate import ModelShape, ViewState, parse_query

Payload = dict[str, Any]


def input_of(api: ApiClient, state: ViewState, model_info: Payload) -> tuple[str, str | None]:
    """The text (and pair) a state names: its own, or dev example `ex` looked up through the API."""
    if state.ex is None:
        return state.text or "", state.pair
    examples = api.dev_examples(model_info["fingerprint"])
    if not 0 <= state.ex < len(examples):
        raise ApiError(422, f"dev example {state.ex} does not exist: ids are 0..{len(examples) - 1}")
    return examples[state.ex]["text"], examples[state.ex]["text_pair"]


def request_state(request: str, model_info: Payload) -> ViewState:
    """A request key (a canonical query made by the page) -> its state."""
    return parse_query(request, ModelShape.from_model_info(model_info))[0]


def make_fetch_attention(api: ApiClient):
    def fetch_attention(request: str | None, model_info: Payload | None) -> Payload:
        """attention-request -> the API's answers as text: under the mask, and unmasked when heads are off."""
        if request is None or not model_info:
            raise PreventUpdate
        state = request_state(request, model_info)
        try:
            text, pair = input_of(api, state, model_info)
            masked = api.attention_text(text, pair, state.off, state.mode)
            baseline = api.attention_text(text, pair, [], "zero") if state.off else None
        except ApiError as exc:
            return {"request": request, "masked": None, "baseline": None, "error": exc.message}
        return {"request": request, "masked": masked, "baseline": baseline, "error": None}

    return fetch_attention


def register(app: Dash, api: ApiClient) -> None:
    app.clientside_callback(js("deriveRequests"), Output("attention-request", "data"),
                            Output("evaluate-request", "data"), Output("head-grid", "aria-busy", allow_duplicate=True),
                            Input("page-search", "data"), State("attention-request", "data"),
                            State("evaluate-request", "data"), prevent_initial_call=True)
    app.callback(Output("attention", "data"), Input("attention-request", "data"), State("model-info", "data"),
                 prevent_initial_call=True)(make_fetch_attention(api))
    app.clientside_callback(js("drawThumbnails"), Output({"focus": ALL}, "style"), Output("head-grid", "aria-busy"),
                            Input("attention", "data"), Input("attention-request", "data"))
    app.clientside_callback(js("drawFocus"), Output("heatmap", "figure"), Output("lines", "figure"),
                            Output("diff", "figure"), Output("focus-title", "children"), Output("lines", "style"),
                            Input("page-search", "data"), Input("attention", "data"))
    # The mask's look follows evaluate-request, which changes only when the mask or mode does, so moving
    # the focus leaves the grid's many toggles alone.
    app.clientside_callback(
        js("styleMask"),
        Output({"toggle": ALL}, "data-ablated"), Output({"toggle": ALL}, "aria-pressed"),
        Output({"toggle": ALL}, "title"), Output({"layer-toggle": ALL}, "className"),
        Output({"mode-button": ALL}, "className"), Output({"mode-button": ALL}, "aria-pressed"),
        Output("mask-summary", "children"), Output("reset-mask", "disabled"),
        Input("evaluate-request", "data"), State("model-info", "data"),
    )
