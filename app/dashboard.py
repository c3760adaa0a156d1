"""The Dash app: a shell (navigation, the one `dcc.Location`) and the registered pages routed by path.

The URL is the single source of truth for what a page shows. Pages come from `app.pages.PAGES`;
each registers its own callbacks once, so a new page is one entry there.
"""

from __future__ import annotations

from pathlib import Path

from dash import Dash, Input, Output, dcc, html
from headscope.app import palette
from headscope.app.api_client import ApiClient
from headscope.app.page import Page
from headscope.app.pages import PAGES

# The assets `headscope.static`: static/ beside app/ in a checkout, headscope/static/ beside headscope/app/ in a wheel
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def _shell(app: Dash, pages: tuple[Page, ...]) -> html.Div:
    nav = [dcc.Link(page.title, href=app.get_relative_path(f"/{page.slug}"), className="nav-link")
           for page in pages] if len(pages) > 1 else []
    return html.Div([
        dcc.Location(id="url", refresh="callback-nav"),
        html.Header([
            html.Span("headscope", className="brand"),
            html.Span("inside a classifier's attention heads", className="tagline"),
            html.Nav(nav, className="nav"),
        ], className="topbar"),
        html.Main(id="page", className="page"),
    ], className="shell", style=palette.css_variables(), **{"data-palette": palette.for_browser()})


def create_dash(api_url: str, *, requests_pathname_prefix: str = "/", pages: tuple[Page, ...] | None = None,
                api: ApiClient | None = None) -> Dash:
    """The dashboard against the API at `api_url` (ending in /api), served under `requests_pathname_prefix`."""
    pages = PAGES if pages is None else pages
    client = api or ApiClient(api_url)
    app = Dash(
        __name__,
        title="headscope",
        update_title=None,
        assets_folder=str(STATIC_DIR),
        requests_pathname_prefix=requests_pathname_prefix,
        routes_pathname_prefix="/",
        suppress_callback_exceptions=True,  # each page's components exist only while it is shown
        serve_locally=True,
    )
    app.layout = _shell(app, pages)
    by_slug = {page.slug: page for page in pages}

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def show_page(pathname: str | None) -> object:
        """The page for the path; an explanation (not a blank page) for an unknown one."""
        slug = app.strip_relative_path(pathname or "/") or ""
        page = by_slug.get(slug)
        if page is None:
            return html.Div([
                html.H2("No such page"),
                html.P(["This dashboard has ", ", ".join(f"/{p.slug}" for p in pages), "; ",
                        dcc.Link("open the inspector", href=app.get_relative_path("/")), "."]),
            ], className="panel unavailable", role="alert")
        return page.layout(client)

    for page in pages:
        page.register_callbacks(app, client)
    return app
