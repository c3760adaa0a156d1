"""Attention for the current input: fetched once per input and mask, drawn in the browser.

The server side asks the API for every head at once in float16 (`format: "f16"`), plus the
unablated baseline for the difference view; thumbnails, the focused heatmap, the lines view and the
difference view are drawn from that by static/headscope.js, so focusing another head needs no call.
"""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State, no_update
from dash.exceptions import PreventUpdate
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.clientside import js
from headscope.app.urlstate import head_name

Payload = dict[str, Any]


def _packed(response: Payload, request: Payload, off: list[list[int]]) -> Payload:
    """The API's answer keyed for the page: heads by name (L3H7 -> base64 float16), tagged with the request."""
    return {
        "key": request["key"], "input_key": request["input_key"], "off": off, "mode": request["mode"],
        "tokens": response["tokens"], "segments": response["segments"], "prediction": response["prediction"],
        "heads": {head_name(h["layer"], h["head"]): h["data"] for h in response["heads"]},
    }


def _input_text(api: ApiClient, request: Payload, model_info: Payload) -> tuple[str, str | None]:
    """The text (and pair) to run: the request's own, or dev example `ex` looked up through the API."""
    if request.get("ex") is None:
        return str(request["text"]), request.get("pair") or None
    examples = api.dev_examples(model_info["fingerprint"])
    ex = int(request["ex"])
    if not 0 <= ex < len(examples):
        raise ApiError(422, f"dev example {ex} does not exist: ids are 0..{len(examples) - 1}")
    return examples[ex]["text"], examples[ex]["text_pair"]


def make_fetch_attention(api: ApiClient):
    def fetch_attention(request: Payload | None, baseline_key: str | None,
                        model_info: Payload | None) -> tuple[Any, Any, Any]:
        """attention-request -> every head under the mask (and, for a new input, with nothing disabled)."""
        if not request or not model_info:
            raise PreventUpdate
        try:
            text, pair = _input_text(api, request, model_info)
            current = _packed(api.attention(text, pair, request["off"], request["mode"]), request, request["off"])
            if not request["off"] or baseline_key == request["input_key"]:
                return current, no_update, no_update  # keepBaseline copies an unmasked answer in the browser
            unmasked = {**request, "key": request["input_key"] + "|baseline"}
            baseline = _packed(api.attention(text, pair, [], "zero"), unmasked, [])
            return current, baseline, request["input_key"]
        except ApiError as exc:
            failure = {"key": request["key"], "input_key": request["input_key"], "off": request["off"],
                       "error": exc.message, "bad_input": exc.is_bad_input}
            return failure, no_update, no_update

    return fetch_attention


def register(app: Dash, api: ApiClient) -> None:
    app.callback(
        Output("attention", "data"), Output("baseline-attention", "data"), Output("baseline-key", "data"),
        Input("attention-request", "data"), State("baseline-key", "data"), State("model-info", "data"),
        prevent_initial_call=True,
    )(make_fetch_attention(api))
    app.clientside_callback(js("keepBaseline"), Output("baseline-attention", "data", allow_duplicate=True),
                            Output("baseline-key", "data", allow_duplicate=True), Input("attention", "data"),
                            prevent_initial_call=True)
    app.clientside_callback(js("drawThumbnails"), Output({"focus": ALL}, "style"),
                            Output("head-grid", "aria-busy"), Input("attention", "data"),
                            Input("attention-request", "data"))
    app.clientside_callback(js("drawFocus"), Output("heatmap", "figure"), Output("lines", "figure"),
                            Output("diff", "figure"), Output("focus-title", "children"), Output("lines", "style"),
                            Input("view-state", "data"), Input("attention", "data"),
                            Input("baseline-attention", "data"))
    app.clientside_callback(js("recoverInput"), Output("view-state", "data", allow_duplicate=True),
                            Output("problems", "data", allow_duplicate=True), Input("attention", "data"),
                            State("view-state", "data"), State("problems", "data"), prevent_initial_call=True)
