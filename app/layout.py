"""Components of the inspector page: input, score, head grid and focus views.

Only structure lives here. What each element shows is derived from the URL by the callbacks
(server-side in the *_callbacks modules, browser-side in static/headscope.js). A control that sets a
URL parameter is any component with the id ``{"param": NAME}`` and a ``value`` (see state_callbacks).
"""

from __future__ import annotations

import json
from typing import Any

from dash import dcc, get_relative_path, html
from headscope.app.means_callbacks import means_components
from headscope.app.urlstate import LINES_MAX_TOKENS, URL_PARAMS, head_name

GRAPH_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "toImage"],
}


def _stores(model_info: dict[str, Any]) -> list[Any]:
    """What the page keeps besides its URL (the state): the model, what it fetched, and its messages."""
    return [
        dcc.Store(id="model-info", data=model_info),  # /api/model, read once per visit
        dcc.Store(id="page-search"),  # {search, how}: the canonical query the page shows (state_callbacks)
        dcc.Store(id="external-search"),  # a URL the page did not write, for the server to check
        dcc.Store(id="problems", data=[]),  # what could not be shown, one message each
        dcc.Store(id="grid-click"),  # {focus|toggle: "L3H7", at}: a head's button clicked (headscope.js)
        dcc.Store(id="grid-request"),  # canonical query of the input and mask (attention_callbacks)
        dcc.Store(id="focus-request"),  # canonical query of the input, mask and focus (attention_callbacks)
        dcc.Store(id="evaluate-request"),  # canonical query of the mask (score_callbacks)
        dcc.Store(id="page-drawn"),  # grid-request whose grid and focused head are on screen (attention_callbacks)
        dcc.Store(id="score-request"),  # evaluate-request once its grid and focus are drawn (score_callbacks)
        dcc.Store(id="grid-attention"),  # every head's thumbnail: the API's answer text, untouched
        dcc.Store(id="focus-attention"),  # the focused head's full map (and unmasked): the API's text, untouched
        dcc.Store(id="view-request"),  # canonical query of the zoom and the lines window (view_callbacks)
        dcc.Store(id="word-request"),  # canonical query of the word view, null at token level (word_callbacks)
        dcc.Store(id="figure-export"),  # when a figure was last downloaded (the browser draws it)
        dcc.Download(id="download"),
        dcc.Download(id="download-html"),
    ]


def _section(title: str, *children: Any, class_name: str = "", extra: Any = None,
             panel_id: str | None = None) -> html.Section:
    heading = html.Div([html.H2(title), extra] if extra is not None else [html.H2(title)], className="section-head")
    ids = {"id": panel_id} if panel_id else {}
    return html.Section([heading, *children], className=f"panel {class_name}".strip(), **ids)


def _input_panel() -> html.Section:
    return _section(
        "Input",
        dcc.Dropdown(id="example-picker", options=[], placeholder="Loading dev examples…", clearable=False,
                     optionHeight=44, maxHeight=360, className="example-picker"),
        html.Details([
            html.Summary("Your own text"),
            dcc.Textarea(id="text-input", placeholder="Type a sentence…", className="text-input"),
            dcc.Textarea(id="pair-input", placeholder="Second segment (optional, for pair tasks)",
                         className="text-input pair"),
            html.Button("Analyse text", id="analyse-text", className="button primary", n_clicks=0),
        ], id="text-details", className="text-details"),
        html.Div(id="input-summary", className="input-summary"),
    )


def _score_panel(metric: str) -> html.Section:
    return _section(
        "Task score",
        html.Div([
            html.Div([html.Div("with mask", className="label"),
                      html.Span("…", id="score", className="score-value", **{"aria-busy": "true"})],
                     className="score-cell main"),
            html.Div([html.Div("nothing disabled", className="label"),
                      html.Span("…", id="baseline-score", className="score-value",
                                **{"aria-busy": "true"})], className="score-cell"),
            html.Div([html.Div("difference", className="label"),
                      html.Span("…", id="score-delta", className="score-value")], className="score-cell"),
        ], className="score-row"),
        html.Div(html.Div(f"{metric} on all of dev", className="muted small"), id="score-details"),
        html.Div(id="score-status", className="status small", role="status"),
        *means_components(),
        html.H3("Flipped examples", className="subhead"),
        html.Div(id="flipped-list", className="flipped-list"),
        html.Div([
            html.Span("Numbers:", className="muted small"),
            html.Button("CSV", id="export-csv", className="button small", n_clicks=0),
            html.Button("JSON", id="export-json", className="button small", n_clicks=0),
            html.Span("Focused head:", className="muted small"),
            html.Button("CSV", id="export-head-csv", className="button small", n_clicks=0),
            html.Span("View:", className="muted small"),
            html.Button("HTML", id="export-html", className="button small", n_clicks=0,
                        title="One HTML file of this view that opens offline: every head as in the grid (pooled to "
                              "32 x 32 on long inputs), the focused head in full, the scores"),
            html.Span(id="export-status", className="status small", role="status"),
        ], className="export-row"),
    )


def _mode_buttons(meanings: dict[str, str]) -> html.Div:
    """One button per ablation mode the server offers, each with the server's own definition."""
    buttons = [
        html.Button([html.B(mode), html.Span(meaning.split(" (")[0], className="mode-short")],
                    id={"mode-button": mode}, className="mode-button", n_clicks=0, title=meaning,
                    **{"aria-pressed": "false", "data-mode": mode})
        for mode, meaning in meanings.items()
    ]
    return html.Div([html.Span("Disable by", className="muted small"), *buttons], className="mode-row",
                    role="group", **{"aria-label": "Ablation mode"})


MEASURES: dict[str, str] = {  # docs/api.md, "Attention measures"
    "weights": "attention weights a_ij (rows sum to 1)",
    "norm": "a_ij x ||f(x_j)||: what the head actually moves (Kobayashi et al. 2020); scaled per head",
    "rollout": "attention rollout through the layers (Abnar & Zuidema 2020): one map per layer",
}
LEVELS: dict[str, str] = {
    "token": "the model's tokens",
    "word": "also the focused head over spaCy's words, beside the sentence's dependency arcs",
}


def _view_controls() -> html.Div:
    """What the maps show (the `measure` URL parameter) and whether the word view is shown (`level`)."""
    def choice(param: str, options: dict[str, str], label: str) -> html.Div:
        return html.Div([
            html.Span(label, className="muted small"),
            dcc.RadioItems(id={"param": param}, options=[{"label": html.Span(name, title=meaning), "value": name}
                                                         for name, meaning in options.items()],
                           value=None, inline=True, className="choice", inputClassName="choice-input"),
        ], className="choice-row", role="group", **{"aria-label": label})

    return html.Div([choice("measure", MEASURES, "Show"), choice("level", LEVELS, "Focus over")],
                    className="view-controls")


def _head_grid(num_layers: int, num_heads: int) -> html.Div:
    """Layers as rows, heads as columns: a picture of the head's attention that focuses it (its cell of one
    picture of every head, the grid's `--thumbs`, as its background) and, under it, a toggle that disables it.

    Every item has a fixed grid position, so the one focus ring moves by its style alone. A large model's
    grid scrolls inside its panel (heads at least 30 px wide, the head labels kept in view). The heads'
    buttons carry no Dash ids: Dash finds a pattern-matching id by scanning every id of its key set, so
    384 of them made each click and mask cost seconds. A click on one is turned into `grid-click` by the
    browser (static/headscope.js), and `styleMask` marks the disabled ones (`data-ablated`).
    """
    def at(row: int, column: int, rows: int = 1) -> dict[str, Any]:
        return {"gridRow": f"{row + 1} / span {rows}", "gridColumn": column + 1}

    def sprite_cell(layer: int, head: int) -> dict[str, Any]:
        """The head's cell of the grid's one picture (`--thumbs`, drawn by `drawThumbnails`)."""
        def percent(index: int, count: int) -> str:
            return f"{100 * index / (count - 1):.4f}%" if count > 1 else "0%"
        return {"backgroundSize": f"{100 * num_heads}% {100 * num_layers}%",
                "backgroundPosition": f"{percent(head, num_heads)} {percent(layer, num_layers)}"}

    items: list[Any] = [html.Div(f"H{head}", className="grid-col-label", style=at(0, head + 1))
                        for head in range(num_heads)]
    for layer in range(num_layers):
        row = 1 + 2 * layer
        items.append(html.Button(
            f"L{layer}", id={"layer-toggle": layer}, className="layer-toggle", n_clicks=0, style=at(row, 0, 2),
            title=f"Disable or enable every head of layer {layer}",
        ))
        for head in range(num_heads):
            name = head_name(layer, head)
            items.append(html.Button(
                className="thumb", title=f"Focus {name}",
                style=at(row, head + 1) | sprite_cell(layer, head),
                **{"data-focus": name, "aria-label": f"Focus {name}"},
            ))
            items.append(html.Button(
                name, className="toggle", title=f"Disable {name}",
                style=at(row + 1, head + 1), **{"data-head": name, "data-ablated": "false", "aria-pressed": "false"},
            ))
    items.append(html.Div(id="focus-ring", className="focus-ring", style=at(1, 1, 2), **{"aria-hidden": "true"}))
    return html.Div(items, id="head-grid", className="head-grid",
                    style={"gridTemplateColumns": f"2.6em repeat({num_heads}, minmax(30px, 1fr))"},
                    **{"aria-busy": "true", "data-focused": "L0H0",
                       "data-grid-shape": json.dumps({"num_layers": num_layers, "num_heads": num_heads})})


def _grid_panel(model_info: dict[str, Any]) -> html.Section:
    meanings = model_info["ablation_modes"]
    return _section(
        "Heads",
        _mode_buttons(meanings),
        _view_controls(),
        _head_grid(int(model_info["num_layers"]), int(model_info["num_heads"])),
        html.Div([
            html.Span(id="mask-summary", className="muted small"),
            html.Button("Enable all heads", id="reset-mask", className="button small", n_clicks=0),
            html.Button("PNG", id={"export": "grid", "format": "png"},
                        className="button small", n_clicks=0, title="Download the grid as PNG"),
            html.Button("SVG", id={"export": "grid", "format": "svg"},
                        className="button small", n_clicks=0, title="Download the grid as SVG"),
        ], className="grid-foot"),
        html.P(
            "Click a picture to focus its head; click its name to switch it off or on; a layer's label "
            "switches the whole layer. Each picture is that head's attention (rows: from-token, columns: "
            "to-token) in the measure Show names, scaled to its own largest value; under rollout each layer "
            "has one picture.",
            className="muted small help",
        ),
        class_name="grid-panel",
    )


def _figure_buttons(figure: str) -> html.Div:
    return html.Div([
        html.Button(fmt.upper(), id={"export": figure, "format": fmt},
                    className="button small", n_clicks=0, title=f"Download as {fmt.upper()}")
        for fmt in ("png", "svg")
    ], className="figure-buttons")


def _graph(graph_id: str, height: int) -> dcc.Graph:
    return dcc.Graph(id=graph_id, config=GRAPH_CONFIG, style={"height": f"{height}px"},
                     figure={"data": [], "layout": {"height": height}})


def _focus_panel() -> html.Section:
    return _section(
        "Focus",
        _graph("heatmap", 430),
        html.P("Drag to zoom, double-click to see every token; labels are thinned to fit, every token is named "
               "on hover. The difference view, the lines view and the link follow this zoom.",
               className="muted small help"),
        class_name="focus-panel", panel_id="focus-panel",
        extra=html.Div([html.Span(id="focus-title", className="focus-title"), _figure_buttons("heatmap")],
                       className="section-tools"),
    )


def _views_row() -> html.Div:
    return html.Div([
        _section("As lines between tokens",
                 html.Div([
                     html.Span(id="lines-window-label", className="muted small lines-window-label"),
                     dcc.Slider(id="lines-window", min=0, max=0, step=1, value=0, marks=None, updatemode="drag",
                                tooltip={"placement": "bottom"}, className="lines-window"),
                 ], className="lines-window-row", title=f"Move the window of tokens the lines are drawn for (at "
                    f"most {LINES_MAX_TOKENS}: the heatmap's zoomed query tokens, or the first ones)"),
                 html.Div(_graph("lines", 420), className="scroll-box"),
                 extra=_figure_buttons("lines"), class_name="lines-panel"),
        _section("Difference from baseline", _graph("diff", 420),
                 html.P("Focused head under the mask minus the same head with nothing disabled. Disabling "
                        "a head changes the heads in the layers above it.", className="muted small"),
                 extra=_figure_buttons("diff"), class_name="diff-panel"),
    ], className="views-row")


def _word_panel() -> html.Section:
    """The focused head over words (`level=word`), hidden at token level (app/word_callbacks.py)."""
    return html.Section([
        html.Div([html.H2("Words: dependency arcs and the focused head"), _figure_buttons("word-view")],
                 className="section-head"),
        html.Div([
            html.Div(dcc.Graph(id="word-view", config=GRAPH_CONFIG, figure={"data": [], "layout": {"height": 200}}),
                     className="scroll-box word-box"),
            html.P(id="word-summary", className="muted small word-summary", role="status"),
        ], className="word-row"),
    ], id="word-panel", className="panel word-panel", hidden=True)


def inspector_layout(model_info: dict[str, Any]) -> html.Div:
    """The whole inspector page for the model `/api/model` describes."""
    task = model_info["task"]
    return html.Div([
        *_stores(model_info),
        html.Div([
            html.Span(model_info["name"], className="model-name"),
            html.Span(f"{model_info['num_layers']} layers × {model_info['num_heads']} heads · "
                      f"task {task['name']} ({task['metric']}, {task['splits'].get('dev', 0)} dev examples) · "
                      f"{model_info['device']}", className="muted small"),
            html.Div([
                html.Label("Share", htmlFor="share-url", className="muted small"),
                dcc.Input(id="share-url", type="text", readOnly=True, value="", className="share-url",
                          debounce=True),
                dcc.Clipboard(target_id="share-url", title="Copy the link", className="copy-button"),
            ], className="share"),
            dcc.Link("Layers for this mask", id="layers-link", href=get_relative_path("/layers"), className="small"),
        ], className="model-line"),
        html.Div([
            html.Div(id="problems-text"),
            html.Button("Dismiss", id="dismiss-problems", className="button small", n_clicks=0),
        ], id="problems-banner", className="problems", role="alert", hidden=True),
        html.Div([
            html.Div([_input_panel(), _score_panel(task["metric"])], className="left-column"),
            _grid_panel(model_info),
            _focus_panel(),
        ], className="main-row"),
        _views_row(),
        _word_panel(),
    ], className="inspector", **{"data-url-params": json.dumps([p.to_dict() for p in URL_PARAMS]),
                                 "data-lines-window": str(LINES_MAX_TOKENS)})


def unavailable_layout(api_url: str, message: str) -> html.Div:
    """Shown instead of the page when the API cannot describe its model."""
    return html.Div([
        html.H2("The headscope API is not available"),
        html.P(["The dashboard asked ", html.Code(f"{api_url}/model"), " and got: ", message]),
        html.P("Start the API (headscope serve) or check --api-url, then reload this page."),
    ], className="panel unavailable", role="alert")
