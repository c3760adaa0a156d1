"""The Layers page (path "/layers"): where the decision forms, layer by layer, under the URL's mask.

Two views, both from the public API (docs/api.md, "Layers"):
- per state 0..L, the logit lens (the model's own head reading that layer) and a linear probe, as lines:
  the current mask solid, the unablated model dashed, each point with its 95 % bootstrap interval
  (two `layers` jobs; the unablated one is shared by every mask and stored);
- the first two principal components of a chosen state's pooled vectors (`/api/representations`),
  points coloured by gold label, crosses where the prediction under the mask is wrong; a click opens
  that example in the inspector with the same mask and mode.

The mask and mode come from the URL, parsed by the inspector's own parser (`app.urlstate`), so one link
moves between the two pages with its state; so do the scatter's state and pooling (`state`, `pooling`),
which the slider and the pooling choice write back.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.development.base_component import Component
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.clientside import js
from headscope.app.page import Page
from headscope.app.urlstate import ModelShape, ViewState, parse_query, to_query

POLL_MS = 1000
SPLIT = "dev"
LABEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
LENS, PROBE = "#1f77b4", "#ff7f0e"


def _state(search: str | None, info: dict[str, Any]) -> tuple[ViewState, list[str]]:
    return parse_query(search or "", ModelShape.from_model_info(info))


def layout(api: ApiClient) -> Component:
    """Built per visit from `/api/model`, so the slider has the loaded model's states."""
    try:
        info = api.model()
    except ApiError as exc:
        return html.Div([html.H2("Layers unavailable"), html.P(exc.message)], className="panel unavailable",
                        role="alert")
    states = info["num_layers"]
    marks = {i: ("emb" if i == 0 else str(i)) for i in range(states + 1)}
    return html.Div([
        dcc.Store(id="layers-model", data=info),
        dcc.Store(id="layers-state"),
        dcc.Store(id="layers-jobs"),
        dcc.Store(id="layers-results"),
        dcc.Store(id="layers-pca-view"),  # [state, pooling] as last taken from or written to the URL
        dcc.Interval(id="layers-poll", interval=POLL_MS, disabled=True),
        html.Section([
            html.Div(html.H2(f"Layers of {info['name']} on {info['task']['name']}"), className="section-head"),
            html.Div(id="layers-mask", className="small"),
            html.Div(id="layers-problems", className="problems", role="alert", hidden=True),
            html.Div([dcc.Link("Open this mask in the inspector", id="layers-inspector-link", href="/")],
                     className="small"),
        ], className="panel"),
        html.Section([
            html.H3("Lens and probe per layer"),
            html.Div(id="layers-status", className="muted small", role="status"),
            dcc.Graph(id="layers-lines", config={"displaylogo": False}, style={"height": "380px"}),
            html.Div(id="layers-lines-source", className="muted small"),
        ], className="panel"),
        html.Section([
            html.H3("The states of one layer: first two principal components"),
            html.Div([
                html.Label("state", htmlFor="layers-layer", className="muted small"),
                html.Div(dcc.Slider(id="layers-layer", min=0, max=states, step=1, value=states, marks=marks),
                         style={"flex": "1", "minWidth": "240px"}),
                dcc.RadioItems(id="layers-pooling", options=[{"label": " first token", "value": "first"},
                                                             {"label": " mean of tokens", "value": "mean"}],
                               value="first", inline=True, className="small"),
            ], style={"display": "flex", "gap": "12px", "alignItems": "center", "flexWrap": "wrap"}),
            html.Div(id="layers-pca-status", className="muted small", role="status"),
            dcc.Graph(id="layers-pca", config={"displaylogo": False}, style={"height": "460px"}),
            html.Div(id="layers-pca-source", className="muted small"),
        ], className="panel"),
    ], className="layers")


def _job_request(mask: dict[str, Any], ablate: bool) -> dict[str, Any]:
    """The `layers` job of the page's mask (``{"off", "mode"}``), or of the unablated model."""
    return {"kind": "layers", "mode": mask["mode"], "split": SPLIT, "limit": None,
            "ablate": mask["off"] if ablate else []}


def lines_figure(results: dict[str, Any], metric: str) -> go.Figure:
    """Lens and probe per state: the mask solid, the unablated model dashed, 95 % intervals as bars."""
    figure = go.Figure()
    names = {"masked": "with the mask", "baseline": "unablated"}
    for which in ("masked", "baseline"):
        result = results.get(which)
        if not result:
            continue
        rows = result["layers"]
        x = [row["layer"] for row in rows]
        for field, colour in (("lens", LENS), ("probe", PROBE)):
            values = [row[field] for row in rows]
            intervals = [row.get(f"{field}_ci95") or [v, v] for row, v in zip(rows, values, strict=True)]
            figure.add_scatter(
                x=x, y=values, mode="lines+markers", name=f"{field}, {names[which]}",
                line={"color": colour, "dash": "solid" if which == "masked" else "dash"},
                error_y={"type": "data", "symmetric": False, "array": [hi - v for (_, hi), v in zip(intervals, values,
                                                                                                  strict=True)],
                         "arrayminus": [v - lo for (lo, _), v in zip(intervals, values, strict=True)],
                         "thickness": 1, "width": 3},
                hovertemplate=f"{field} ({names[which]}) at state %{{x}}: %{{y:.3f}}<extra></extra>",
            )
    figure.update_layout(margin={"l": 50, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h", "y": 1.12},
                         xaxis={"title": "state (0 = embeddings; l = output of layer l-1)", "dtick": 1},
                         yaxis={"title": metric})
    return figure


def pca_figure(body: dict[str, Any], labels: list[str]) -> go.Figure:
    """Points coloured by gold label; a cross where the prediction under the mask is wrong."""
    figure = go.Figure()
    for index, label in enumerate(labels):
        colour = LABEL_COLOURS[index % len(LABEL_COLOURS)]
        for wrong in (False, True):
            points = [p for p in body["points"] if p["label"] == label and (p["predicted"] != label) == wrong]
            if not points:
                continue
            figure.add_scatter(
                x=[p["x"] for p in points], y=[p["y"] for p in points], mode="markers",
                name=f"{label}" + (", predicted wrong" if wrong else ""),
                marker={"color": colour, "symbol": "x" if wrong else "circle", "size": 8 if wrong else 6,
                        "opacity": 0.9 if wrong else 0.6},
                customdata=[[p["id"], p["predicted"]] for p in points],
                hovertemplate="example %{customdata[0]}<br>gold " + label
                              + "<br>predicted %{customdata[1]}<extra></extra>",
            )
    first, second = body["explained"]
    figure.update_layout(margin={"l": 50, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h", "y": 1.12},
                         xaxis={"title": f"PC1 ({100 * first:.1f} % of variance)"},
                         yaxis={"title": f"PC2 ({100 * second:.1f} % of variance)"}, clickmode="event")
    return figure


def register_callbacks(app: Dash, api: ApiClient) -> None:
    inspector = app.get_relative_path("/")
    # The inspector's link to this page carries its whole URL (mask and mode are what this page reads; the
    # rest comes back when a point opens the inspector again): in the browser, so a click costs no request.
    app.clientside_callback(js("layersLink"), Output("layers-link", "href"), Input("page-search", "data"),
                            State("layers-link", "href"))

    @app.callback(Output("layers-state", "data"), Output("layers-mask", "children"),
                  Output("layers-problems", "children"), Output("layers-problems", "hidden"),
                  Output("layers-inspector-link", "href"),
                  Input("url", "search"), Input("layers-model", "data"), State("layers-state", "data"))
    def read_url(search, info, current):
        """The URL's mask and mode (the inspector's parser); what it names, what in it was invalid. The
        mask's store changes only with the mask, so moving the slider starts no job."""
        if not info:
            return no_update, no_update, no_update, no_update, no_update
        state, problems = _state(search, info)
        heads = ", ".join(f"L{layer}H{head}" for layer, head in state.off) or "none"
        mask = html.Span([html.B("heads off: "), heads, html.B(" · mode: "), state.mode,
                          html.Span(f" · split {SPLIT} ({info['task']['splits'].get(SPLIT, 0)} examples)",
                                    className="muted")])
        masked = {"off": [list(h) for h in state.off], "mode": state.mode}
        return (no_update if masked == current else masked, mask, " ".join(problems), not problems,
                inspector + to_query(state))

    # The URL and the scatter's controls, one direction per callback: a callback whose Inputs are all on
    # this page is never fired on another page, while one that also takes the shell's `url` fires there
    # and finds its other Inputs missing (Dash's "nonexistent object was used in an Input" console error).
    @app.callback(Output("layers-layer", "value"), Output("layers-pooling", "value"), Output("layers-pca-view", "data"),
                  Input("url", "search"), State("layers-layer", "value"), State("layers-pooling", "value"),
                  State("layers-pca-view", "data"), State("layers-model", "data"))
    def controls_from_url(search, layer, pooling, applied, info):
        """The URL's `state` and `pooling` (docs/api.md, "Dashboard URL") set the slider and the pooling
        choice. `applied` is the URL's pair last shown: only a URL that differs from it (a link, Back) moves
        the controls; one this page wrote from them is already shown."""
        if not info:
            return no_update, no_update, no_update
        view = _state(search, info)[0]
        shown = [info["num_layers"] if view.state is None else view.state, view.pooling]
        if shown == applied:
            return no_update, no_update, no_update
        return (no_update if shown[0] == layer else shown[0], no_update if shown[1] == pooling else shown[1], shown)

    @app.callback(Output("url", "search", allow_duplicate=True),
                  Output("layers-pca-view", "data", allow_duplicate=True),
                  Input("layers-layer", "value"), Input("layers-pooling", "value"), State("url", "search"),
                  State("layers-pca-view", "data"), State("layers-model", "data"), prevent_initial_call=True)
    def url_from_controls(layer, pooling, search, applied, info):
        """Moving the slider or the pooling choice writes the URL, so the link reproduces the scatter (a
        pair equal to `applied` came from the URL: nothing to write)."""
        if not info or [layer, pooling] == applied:
            return no_update, no_update
        view = _state(search, info)[0]
        chosen = replace(view, state=None if layer == info["num_layers"] else int(layer), pooling=pooling)
        query = to_query(chosen)
        return (no_update if query == to_query(view) else query), [int(layer), pooling]

    @app.callback(Output("layers-jobs", "data"), Output("layers-status", "children", allow_duplicate=True),
                  Input("layers-state", "data"), State("layers-model", "data"), prevent_initial_call=True)
    def start_jobs(state, info):
        """The unablated model's `layers` job and, with heads off, the mask's (found stored when done before)."""
        if not state:
            return no_update, no_update
        try:
            jobs = {"baseline": api.start_job(_job_request(state, ablate=False))}
            if state["off"]:
                jobs["masked"] = api.start_job(_job_request(state, ablate=True))
        except ApiError as exc:
            return None, exc.message
        return jobs, "starting…"

    @app.callback(Output("layers-results", "data"), Output("layers-status", "children"),
                  Output("layers-poll", "disabled"), Output("layers-lines-source", "children"),
                  Input("layers-jobs", "data"), Input("layers-poll", "n_intervals"), prevent_initial_call=True)
    def follow_jobs(jobs, _ticks):
        """Progress while the jobs run; their results once done."""
        if not jobs:
            return None, no_update, True, ""
        results, running, notes = {}, [], []
        try:
            for which, job_id in jobs.items():
                job = api.job(job_id)
                if job["state"] == "done":
                    results[which] = job["result"]
                elif job["state"] in ("queued", "running"):
                    eta = f", about {job['eta_s']:.0f} s left" if job.get("eta_s") is not None else ""
                    running.append(f"{which}: {job['state']} {100 * job['progress']:.0f} %{eta}")
                else:
                    notes.append(f"{which}: {job['state']}: {job.get('error') or 'stopped'}")
        except ApiError as exc:
            return None, exc.message, True, ""
        status = "; ".join(running + notes) or "done"
        first = next(iter(results.values()), None)
        source = ""
        if first:
            source = (f"{first['metric']} on {first['split']} (n = {first['n']}); probe: logistic regression on "
                      f"standardised first-token states, fit on {first['n_probe_fit']} examples of "
                      f"{first['probe_split']}; bars: 95 % bootstrap intervals. Numbers from GET /api/jobs/"
                      + ", ".join(jobs.values()))
        return results, status, not running, source

    @app.callback(Output("layers-lines", "figure"), Input("layers-results", "data"), State("layers-model", "data"))
    def draw_lines(results, info):
        if not results or not info:
            return go.Figure()
        return lines_figure(results, info["task"]["metric"])

    @app.callback(Output("layers-pca", "figure"), Output("layers-pca-status", "children"),
                  Output("layers-pca-source", "children"),
                  Input("layers-state", "data"), Input("layers-layer", "value"), Input("layers-pooling", "value"),
                  State("layers-model", "data"), prevent_initial_call=True)
    def draw_pca(state, layer, pooling, info):
        """The chosen state's pooled vectors on their first two principal components."""
        if not state or layer is None:
            return no_update, no_update, no_update
        size = info["task"]["splits"].get(SPLIT, 0)
        cap = info.get("limits", {}).get("max_representations", size)
        request = {"layer": int(layer), "split": SPLIT, "limit": None if size <= cap else cap,
                   "ablate": state["off"], "mode": state["mode"], "pooling": pooling}
        try:
            body = api.representations(request)
        except ApiError as exc:
            return go.Figure(), exc.message, ""
        wrong = sum(p["label"] != p["predicted"] for p in body["points"])
        source = (f"state {body['layer']}, {body['pooling']} pooling, {body['n']} {body['split']} examples, "
                  f"mode {body['mode']}; {wrong} predicted wrong under the mask. Numbers from POST "
                  "/api/representations.")
        return pca_figure(body, info["labels"]), "", source

    @app.callback(Output("url", "pathname", allow_duplicate=True), Output("url", "search", allow_duplicate=True),
                  Input("layers-pca", "clickData"), State("url", "search"), State("layers-model", "data"),
                  prevent_initial_call=True)
    def open_example(click, search, info):
        """A clicked point opens its example in the inspector, with the same mask and mode."""
        try:
            example = int(click["points"][0]["customdata"][0])
        except (TypeError, KeyError, IndexError, ValueError):
            return no_update, no_update
        view = _state(search, info)[0]
        return inspector, to_query(replace(view, ex=example, text=None, pair=None))


PAGE = Page(slug="layers", title="Layers", layout=layout, register_callbacks=register_callbacks)
