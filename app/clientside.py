"""Names of the browser-side callbacks in static/headscope.js, for registering them from Python."""

from __future__ import annotations

from dash import ClientsideFunction

NAMESPACE = "headscope"


def js(function_name: str) -> ClientsideFunction:
    """The function `window.dash_clientside.headscope[function_name]`."""
    return ClientsideFunction(namespace=NAMESPACE, function_name=function_name)
