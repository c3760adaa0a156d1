"""The page's controls: each click becomes the next `view-state` in the browser, with no server call.

The grid, mode buttons and input controls then redraw from that state (see `styleGrid`, `syncInputs`).
"""

from __future__ import annotations

from dash import ALL, Dash, Input, Output, State
from headscope.app.api_client import ApiClient
from headscope.app.clientside import js

STATE = Output("view-state", "data", allow_duplicate=True)


def register(app: Dash, api: ApiClient) -> None:
    current = State("view-state", "data")
    toggles = {"toggle": ALL}
    app.clientside_callback(js("toggleHead"), STATE, Input(toggles, "n_clicks"), current, prevent_initial_call=True)
    app.clientside_callback(js("focusHead"), STATE, Input({"focus": ALL}, "n_clicks"), current,
                            prevent_initial_call=True)
    app.clientside_callback(js("toggleLayer"), STATE, Input({"layer-toggle": ALL}, "n_clicks"),
                            current, State("model-info", "data"), prevent_initial_call=True)
    app.clientside_callback(js("resetMask"), STATE, Input("reset-mask", "n_clicks"), current,
                            prevent_initial_call=True)
    app.clientside_callback(js("pickMode"), STATE, Input({"mode-button": ALL}, "n_clicks"), current,
                            prevent_initial_call=True)
    app.clientside_callback(js("pickExample"), STATE, Input("example-picker", "value"), current,
                            prevent_initial_call=True)
    app.clientside_callback(js("analyseText"), STATE, Input("analyse-text", "n_clicks"),
                            State("text-input", "value"), State("pair-input", "value"), current,
                            prevent_initial_call=True)
    app.clientside_callback(js("openFlipped"), STATE, Input({"flipped": ALL}, "n_clicks"), current,
                            prevent_initial_call=True)
    app.clientside_callback(js("syncInputs"), Output("example-picker", "value"), Output("text-input", "value"),
                            Output("pair-input", "value"), Output("text-details", "open"),
                            Input("view-state", "data"), Input("example-picker", "options"),
                            prevent_initial_call=True)
    # The mask's look follows evaluate-request, which changes only when the mask or mode does, so
    # moving the focus leaves the grid's many toggles alone.
    app.clientside_callback(
        js("styleMask"),
        Output(toggles, "data-ablated"), Output(toggles, "aria-pressed"), Output(toggles, "title"),
        Output({"layer-toggle": ALL}, "className"),
        Output({"mode-button": ALL}, "className"), Output({"mode-button": ALL}, "aria-pressed"),
        Output("mask-summary", "children"), Output("reset-mask", "disabled"),
        Input("evaluate-request", "data"), State("model-info", "data"),
    )
    app.clientside_callback(js("styleFocus"), Output("focus-ring", "style"), Output("head-grid", "data-focused"),
                            Input("view-state", "data"))
