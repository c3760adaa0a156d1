"""The address bar <-> the page's validated state.

The URL is the single source of truth. A search this page did not write itself (the first load, a
pasted link, back/forward) is parsed on the server by `app.urlstate`; a change made with the
page's controls is written to the address bar in the browser, in the same update as `#score`
(so a test never sees a new URL beside an old score). `view-state` never feeds back into the
controls that produced it (the dash#889 loop).
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State
from dash.exceptions import PreventUpdate
from headscope.app.api_client import ApiClient
from headscope.app.clientside import js
from headscope.app.urlstate import ModelShape, parse_query


def parse_search(raw_search: dict[str, Any] | None, model_info: dict[str, Any] | None) -> tuple[dict, list[str]]:
    """A search string from the address bar -> the state it names, and what in it was invalid."""
    if not raw_search or not model_info:
        raise PreventUpdate
    state, problems = parse_query(str(raw_search.get("search") or ""), ModelShape.from_model_info(model_info))
    return {**state.to_dict(), "origin": "url"}, problems


def register(app: Dash, api: ApiClient) -> None:
    app.clientside_callback(js("routeSearch"), Output("raw-search", "data"),
                            Input("url", "search"), Input("model-info", "data"), State("view-state", "data"))
    app.callback(Output("view-state", "data", allow_duplicate=True), Output("problems", "data", allow_duplicate=True),
                 Input("raw-search", "data"), State("model-info", "data"),
                 prevent_initial_call=True)(parse_search)
    app.clientside_callback(js("writeUrl"), Output("url", "search", allow_duplicate=True),
                            Output("score", "children", allow_duplicate=True),
                            Output("score", "aria-busy", allow_duplicate=True),
                            Output("score-delta", "children", allow_duplicate=True),
                            Output("score-status", "children", allow_duplicate=True),
                            Input("view-state", "data"), State("url", "search"), State("score-cache", "data"),
                            State("score-latest", "data"),
                            prevent_initial_call=True)
    app.clientside_callback(js("shareUrl"), Output("share-url", "value"), Input("view-state", "data"))
    app.clientside_callback(js("showProblems"), Output("problems-text", "children"),
                            Output("problems-banner", "hidden"), Input("problems", "data"))
    app.clientside_callback(js("dismissProblems"), Output("problems", "data", allow_duplicate=True),
                            Input("dismiss-problems", "n_clicks"), prevent_initial_call=True)
    app.clientside_callback(js("deriveRequests"), Output("attention-request", "data"),
                            Output("evaluate-request", "data"), Output("head-grid", "aria-busy", allow_duplicate=True),
                            Input("view-state", "data"),
                            State("attention-request", "data"), State("evaluate-request", "data"),
                            prevent_initial_call=True)
