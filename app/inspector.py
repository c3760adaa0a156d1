"""The inspector page (path "/"): one input, every head's attention, heads switched off, the score."""

from __future__ import annotations

from dash import Dash
from dash.development.base_component import Component
from headscope.app import attention_callbacks, control_callbacks, export_callbacks, score_callbacks, url_callbacks
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.layout import inspector_layout, unavailable_layout
from headscope.app.page import Page


def layout(api: ApiClient) -> Component:
    """Built per visit from `/api/model`, so the grid has the loaded model's shape."""
    try:
        info = api.model()
    except ApiError as exc:
        return unavailable_layout(api.base_url, exc.message)
    return inspector_layout(info)


def register_callbacks(app: Dash, api: ApiClient) -> None:
    for module in (url_callbacks, control_callbacks, attention_callbacks, score_callbacks, export_callbacks):
        module.register(app, api)


PAGE = Page(slug="", title="Inspector", layout=layout, register_callbacks=register_callbacks)
