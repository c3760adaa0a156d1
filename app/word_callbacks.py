"""The focused head over words (``level=word`` in the URL): its dependency arcs and strongest attention.

`deriveWordRequest` (browser) turns the URL into `word-request`, the canonical query of what the view
depends on (input, mask, measure, focus), or null at token level, so nothing is fetched unless the view is
shown. The server asks the API for the focused head's word-level map (the focused layer's for rollout) and
the input's parse, and `word_view` draws them. The API's own refusal (a tokenizer with no offsets mapping,
an input the parser cannot take) is shown in the panel as it says it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import Dash, Input, Output, State
from dash.exceptions import PreventUpdate
from headscope.app import palette
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.attention_callbacks import input_of, request_state
from headscope.app.clientside import js
from headscope.app.word_view import word_arcs, word_view_figure

Payload = dict[str, Any]
DIRECTION_NOTE = ("Left: the sentence's dependency arcs (spaCy); right: each word's strongest attention among "
                  "the other words of its segment (Clark et al.'s dependent-to-head reading, as the syntax job "
                  "scores it). Green: the word attends most to its syntactic head. Dotted arcs (punct) are not "
                  "counted.")


def message_figure(message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                          font={"size": 13, "color": palette.MUTED})
    figure.update_layout(height=160, xaxis={"visible": False}, yaxis={"visible": False},
                         margin={"l": 10, "r": 10, "t": 10, "b": 10}, paper_bgcolor=palette.PANEL,
                         plot_bgcolor=palette.PANEL)
    return figure


def focused_map(answer: Payload, layer: int, measure: str) -> tuple[np.ndarray, bool]:
    """The view's word-level map: the one head asked for (the focused layer's for rollout), and whether it is
    a head that moves nothing (norm, disabled in zero or mean mode)."""
    if measure == "rollout":
        entry = next(e for e in answer["layers"] if e["layer"] == layer)
        return np.asarray(entry["values"], dtype=np.float32), False
    entry = answer["heads"][0]
    return np.asarray(entry["values"], dtype=np.float32), bool(entry.get("disabled"))


def make_draw_word_view(api: ApiClient):
    def draw_word_view(request: str | None, model_info: Payload | None) -> tuple[Any, Any, bool]:
        """word-request -> the word view's figure, its one-line summary, and whether the panel is hidden."""
        if not model_info:
            raise PreventUpdate
        if not request:
            return message_figure(""), "", True
        state = request_state(request, model_info)
        measure = state.measure
        what = (f"rollout up to layer {state.layer}" if measure == "rollout"
                else f"L{state.layer}H{state.head} ({measure})")
        try:
            text, pair = input_of(api, state, model_info)
            heads = None if measure == "rollout" else [(state.layer, state.head)]
            answer = api.attention(text, pair, state.off, state.mode, heads=heads, measure=measure, level="word")
            parse = api.parse(text, pair)
        except ApiError as exc:
            return message_figure("No word view for this model or input"), f"No word view: {exc.message}", False
        values, silent = focused_map(answer, state.layer, measure)
        try:
            arcs = word_arcs(parse, answer["tokens"], answer["segments"], values)
        except ValueError as exc:
            return message_figure("No word view for this input"), f"No word view: {exc}.", False
        right, counted = arcs.score
        if silent:
            summary = (f"L{state.layer}H{state.head} is disabled ({state.mode}): it moves nothing, so no word "
                       f"attends anywhere; 0 of {counted} arcs right.")
        else:
            summary = f"{what}: {right} of {counted} dependency arcs right. {DIRECTION_NOTE}"
        return word_view_figure(arcs, f"{what}, mode {state.mode}"), summary, False

    return draw_word_view


def register(app: Dash, api: ApiClient) -> None:
    app.clientside_callback(js("deriveWordRequest"), Output("word-request", "data"), Input("page-search", "data"),
                            State("word-request", "data"))
    app.callback(Output("word-view", "figure"), Output("word-summary", "children"), Output("word-panel", "hidden"),
                 Input("word-request", "data"), State("model-info", "data"),
                 prevent_initial_call=True)(make_draw_word_view(api))
