"""What a dashboard page is: a path, a title for the navigation bar, a layout and its callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dash import Dash
from dash.development.base_component import Component
from headscope.app.api_client import ApiClient


@dataclass(frozen=True)
class Page:
    """One page of the dashboard. `slug` is the path without slashes ("" = the home page)."""

    slug: str
    title: str
    layout: Callable[[ApiClient], Component]  # built at each visit, so it reflects the API's current model
    register_callbacks: Callable[[Dash, ApiClient], None]
