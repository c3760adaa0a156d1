"""What the maps show of the input: the heatmap's zoom and the lines view's window, both in the URL.

The URL's `zoom` and `lines` (app/urlstate.py, scope "view") are the state; no fetch depends on them, so
zooming or moving the window changes the address bar (a quiet replacement, not a history entry) and
redraws from the attention already in the page:
- the heatmap's zoom (drag, double-click) -> `zoom` in the URL (`zoomSearch`, in whole tokens); the
  slider -> `lines` (`linesSearch`); a new zoom clears `lines`, so the lines view follows the zoom again;
- `deriveView`: the URL -> `view-request`, the canonical query of the view parameters alone, changed only
  when they change;
- `view-request` -> the heatmap and the difference view zoomed there (`applyZoom`, a patch of their axes;
  `drawFocus` draws a new head already zoomed) and the lines view's window (`drawLines`): the zoom's query
  tokens, or `lines`, at most LINES_MAX_TOKENS tokens, the most that stay legible.
"""

from __future__ import annotations

from dash import Dash, Input, Output, State
from headscope.app.api_client import ApiClient
from headscope.app.clientside import js


def register(app: Dash, _api: ApiClient) -> None:
    app.clientside_callback(js("zoomSearch"), Output("page-search", "data", allow_duplicate=True),
                            Input("heatmap", "relayoutData"), State("page-search", "data"),
                            State("focus-attention", "data"), prevent_initial_call=True)
    app.clientside_callback(js("linesSearch"), Output("page-search", "data", allow_duplicate=True),
                            Input("lines-window", "value"), State("page-search", "data"),
                            State("focus-attention", "data"), prevent_initial_call=True)
    app.clientside_callback(js("deriveView"), Output("view-request", "data"), Input("page-search", "data"),
                            State("view-request", "data"), prevent_initial_call=True)
    app.clientside_callback(js("applyZoom"), Output("heatmap", "figure", allow_duplicate=True),
                            Output("diff", "figure", allow_duplicate=True), Input("view-request", "data"),
                            State("focus-attention", "data"), prevent_initial_call=True)
    app.clientside_callback(js("drawLines"), Output("lines", "figure"), Output("lines", "style"),
                            Output("lines-window", "max"), Output("lines-window", "value"),
                            Output("lines-window-label", "children"),
                            Input("focus-attention", "data"), Input("view-request", "data"))
