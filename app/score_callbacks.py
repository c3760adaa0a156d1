"""The task score for the URL's mask and mode on all of dev, the flipped examples, the input summary.

`/api/evaluate` can take tens of seconds for a new mask on a CPU: it runs in a server callback (a
worker thread) while the browser shows `#score` with `aria-busy="true"`; results are kept in the page
by request key, so returning to a mask already scored needs no call.
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State
from dash.exceptions import PreventUpdate
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.clientside import js

Payload = dict[str, Any]
OPTION_TEXT_CHARS = 110


def make_fetch_score(api: ApiClient):
    def fetch_score(request: Payload | None) -> Payload:
        """evaluate-request -> /api/evaluate on all of dev (split and limit null), tagged with the request."""
        if not request:
            raise PreventUpdate
        try:
            result = api.evaluate(request["off"], request["mode"], split=None, limit=None)
        except ApiError as exc:
            return {"key": request["key"], "error": exc.message}
        return {"key": request["key"], "off": request["off"], "mode": request["mode"],
                **{k: result[k] for k in ("metric", "score", "baseline", "delta", "n", "flipped", "cached",
                                          "elapsed_ms", "significance")}}

    return fetch_score


def example_option(item: Payload) -> dict[str, Any]:
    """A picker entry: id, gold label, whether the model gets it right, and the start of the text."""
    text = item["text"] if len(item["text"]) <= OPTION_TEXT_CHARS else item["text"][:OPTION_TEXT_CHARS] + "…"
    verdict = "" if item["predicted"] == item["label"] else f" (model: {item['predicted']})"
    return {"label": f"#{item['id']} · {item['label']}{verdict} · {text}", "value": item["id"]}


def make_load_examples(api: ApiClient):
    def load_examples(model_info: Payload | None) -> tuple[Any, Any, str]:
        """The dev split (text, gold label, unablated prediction) for the picker and the flipped list."""
        if not model_info:
            raise PreventUpdate
        try:
            items = api.dev_examples(model_info["fingerprint"])
        except ApiError as exc:
            return None, [], f"Could not load the dev examples: {exc.message}"
        return items, [example_option(item) for item in items], "Pick a dev example…"

    return load_examples


def register(app: Dash, api: ApiClient) -> None:
    app.callback(Output("score-latest", "data"), Input("evaluate-request", "data"),
                 prevent_initial_call=True)(make_fetch_score(api))
    app.callback(Output("examples", "data"), Output("example-picker", "options"),
                 Output("example-picker", "placeholder"), Input("model-info", "data"))(make_load_examples(api))
    app.clientside_callback(js("collectScore"), Output("score-cache", "data"), Input("score-latest", "data"),
                            State("score-cache", "data"), prevent_initial_call=True)
    app.clientside_callback(js("renderScore"), Output("score", "children"), Output("score", "aria-busy"),
                            Output("baseline-score", "children"), Output("baseline-score", "aria-busy"),
                            Output("score-delta", "children"), Output("score-delta", "className"),
                            Output("score-details", "children"), Output("score-status", "children"),
                            Input("evaluate-request", "data"), Input("score-cache", "data"),
                            Input("score-latest", "data"))
    app.clientside_callback(js("renderSignificance"), Output("delta-ci", "children"), Output("p-value", "children"),
                            Output("p-words", "children"), Input("evaluate-request", "data"),
                            Input("score-cache", "data"))
    app.clientside_callback(js("renderFlipped"), Output("flipped-list", "children"),
                            Input("evaluate-request", "data"), Input("score-cache", "data"),
                            Input("examples", "data"), State("view-state", "data"), State("model-info", "data"))
    app.clientside_callback(js("renderInputSummary"), Output("input-summary", "children"),
                            Input("view-state", "data"), Input("examples", "data"), Input("attention", "data"),
                            Input("baseline-attention", "data"), Input("attention-request", "data"),
                            State("model-info", "data"))
