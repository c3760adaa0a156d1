"""Downloads: each figure as PNG or SVG (drawn in the browser), the current numbers as CSV or JSON."""

from __future__ import annotations

from dash import ALL, Dash, Input, Output, State
from headscope.app.api_client import ApiClient
from headscope.app.clientside import js


def register(app: Dash, api: ApiClient) -> None:
    app.clientside_callback(js("exportFigure"), Output("figure-export", "data"),
                            Input({"export": ALL, "format": ALL}, "n_clicks"),
                            State("view-state", "data"), State("attention", "data"), State("model-info", "data"),
                            prevent_initial_call=True)
    app.clientside_callback(js("exportNumbers"), Output("download", "data"),
                            Input("export-csv", "n_clicks"), Input("export-json", "n_clicks"),
                            Input("export-head-csv", "n_clicks"), State("view-state", "data"),
                            State("evaluate-request", "data"), State("score-cache", "data"),
                            State("attention", "data"), State("baseline-attention", "data"),
                            State("model-info", "data"), State("examples", "data"), prevent_initial_call=True)
