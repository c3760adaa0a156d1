"""Downloads: each figure as PNG or SVG (drawn in the browser), the current numbers as CSV or JSON, and
the view as one standalone HTML file (built on the server by the builder ``hs.export_html`` uses)."""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State, dcc, no_update
from dash.exceptions import PreventUpdate
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.clientside import js
from headscope.app.html_export import FILENAME, view_html


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

    @app.callback(Output("download-html", "data"), Output("export-status", "children"),
                  Input("export-html", "n_clicks"), State("view-state", "data"), State("model-info", "data"),
                  State("share-url", "value"), prevent_initial_call=True)
    def download_view_html(_clicks: int, state: dict[str, Any] | None, model_info: dict[str, Any] | None,
                           share_url: str | None) -> tuple[Any, str]:
        """The export menu's HTML button -> the current view as one offline HTML file."""
        if not state or not model_info:
            raise PreventUpdate
        try:
            return dcc.send_string(view_html(api, state, model_info, share_url or None), FILENAME), ""
        except ApiError as exc:
            return no_update, f"HTML export failed: {exc.message}"
