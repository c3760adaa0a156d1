"""The atlas page (path "/atlas"): per-head statistics, pattern types and ablation sweeps of the whole model.

Everything comes from the API's jobs (``/api/jobs``): choosing an analysis shows a finished result at
once when the server has one (computed earlier, maybe before a restart); otherwise "Run" starts the
job, and its progress and time left show until it is done. Each view names the API call that returns
its numbers. Clicking a head (map or table) links to it in the inspector, ``/?layer=L&head=H``, a URL
built only from integers read back from the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, ctx, dash_table, dcc, html, no_update
from dash.development.base_component import Component
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.measure_compare import compare_figure
from headscope.app.page import Page
from headscope.app.syntax_view import DIRECTIONS, clicked_head, relation_head_figure, syntax_rows

KINDS: dict[str, str] = {
    "single-head": "Every head disabled alone: change of the metric (Kovaleva et al., Fig. 8)",
    "layer": "Every layer disabled: change of the metric",
    "importance": "Head importance E|dL/dξ| (Michel et al.), L2-normalised per layer",
    "pruning": "Iterative pruning by importance, 10 % of heads a step (Michel et al.)",
    "greedy": "Greedy search for heads whose removal raises the metric (chosen on dev, checked on test)",
    "stats": "Attention statistics per head (Clark et al.; Voita et al.)",
    "patterns": "Pattern types per head (Kovaleva et al.; rule-based classifier)",
    "similarity": "Cosine similarity of attention maps, fine-tuned vs pre-trained (Kovaleva et al.)",
    "syntax": "Syntax heads: each head as a dependency parser vs the best fixed offset (Clark et al.)",
}
MODE_KINDS = ("single-head", "layer", "importance", "pruning", "greedy")
STATISTICS = ("entropy", "to_cls", "to_sep", "to_punct", "to_self", "to_prev", "to_next", "confidence")
PATTERN_TYPES = ("vertical", "diagonal", "vertical+diagonal", "block", "heterogeneous")
LIMITS = (("all of the split", 0), ("first 100", 100), ("first 300", 300), ("first 1000", 1000))
POLL_MS = 1000


# -- talking to the API ---------------------------------------------------------------------------------
def _request(kind: str, mode: str, split: str, limit: int, split_sizes: dict[str, int],
             measure: str = "weights") -> dict[str, Any]:
    """The job request for the controls, with the limit the API would normalise it to (stats: the measure)."""
    size = split_sizes.get(split, 0)
    request = {"kind": kind, "mode": mode, "split": split, "limit": limit if 0 < limit < size else None}
    return {**request, "measure": measure} if kind == "stats" else request


def _matches(job: dict[str, Any], request: dict[str, Any]) -> bool:
    params = job.get("params", {})
    same_mode = request["kind"] not in MODE_KINDS or params.get("mode") == request["mode"]
    return (params.get("kind") == request["kind"] and same_mode and params.get("split") == request["split"]
            and params.get("limit") == request["limit"] and not params.get("word_level")
            and not params.get("ablate") and params.get("measure", "weights") == request.get("measure", "weights"))


def stats_pair(api: ApiClient, params: dict[str, Any], result: dict[str, Any]) -> tuple[dict, dict] | None:
    """A finished stats result and its counterpart in the other measure on the same examples, as (weights,
    norm), when the server has both."""
    other = "weights" if result.get("measure") == "norm" else "norm"
    wanted = {"kind": "stats", "mode": None, "split": params.get("split"), "limit": params.get("limit"),
              "measure": other}
    for job in api.jobs():
        if _matches(job, wanted) and job["state"] == "done":
            found = api.job(job["id"])["result"]
            return (found, result) if other == "weights" else (result, found)
    return None


# -- layout -----------------------------------------------------------------------------------------------
def _controls(splits: list[str]) -> html.Div:
    return html.Div([
        dcc.Dropdown(id="atlas-kind", options=[{"label": text, "value": kind} for kind, text in KINDS.items()],
                     value="single-head", clearable=False, className="atlas-kind"),
        dcc.Dropdown(id="atlas-mode", options=["zero", "uniform", "mean"], value="zero", clearable=False,
                     className="atlas-small"),
        dcc.Dropdown(id="atlas-measure", options=[{"label": "by weight", "value": "weights"},
                                                  {"label": "by norm (Kobayashi et al.)", "value": "norm"}],
                     value="weights", clearable=False, className="atlas-small", style={"width": "220px"}),
        dcc.Dropdown(id="atlas-split", options=splits, value="dev" if "dev" in splits else splits[0],
                     clearable=False, className="atlas-small"),
        dcc.Dropdown(id="atlas-limit", options=[{"label": label, "value": value} for label, value in LIMITS],
                     value=0, clearable=False, className="atlas-small"),
        html.Button("Run", id="atlas-run", className="button primary", n_clicks=0),
        html.Button("Cancel", id="atlas-cancel", className="button", n_clicks=0),
    ], className="atlas-controls", style={"display": "flex", "gap": "8px", "alignItems": "center",
                                          "flexWrap": "wrap"})


def layout(api: ApiClient) -> Component:
    """Built per visit from `/api/model`, so the maps have the loaded model's shape."""
    try:
        info = api.model()
    except ApiError as exc:
        return html.Div([html.H2("Atlas unavailable"), html.P(exc.message)], className="panel unavailable",
                        role="alert")
    splits = list(info["task"]["splits"])
    return html.Div([
        dcc.Store(id="atlas-model", data={"splits": info["task"]["splits"], "num_layers": info["num_layers"],
                                          "num_heads": info["num_heads"], "metric": info["task"]["metric"]}),
        dcc.Store(id="atlas-job"),
        dcc.Store(id="atlas-result"),
        dcc.Interval(id="atlas-poll", interval=POLL_MS, disabled=True),
        html.Section([
            html.Div(html.H2(f"Atlas of {info['name']} on {info['task']['name']}"), className="section-head"),
            _controls(splits),
            html.Div([html.Progress(id="atlas-progress", value="0", max="1", style={"width": "240px"}),
                      html.Span(id="atlas-status", className="muted small", role="status")],
                     style={"display": "flex", "gap": "10px", "alignItems": "center", "marginTop": "6px"}),
            html.Div(id="atlas-source", className="muted small"),
        ], className="panel"),
        html.Section([
            dcc.Dropdown(id="atlas-statistic", options=list(STATISTICS), value="entropy", clearable=False,
                         className="atlas-small", style={"display": "none"}),
            dcc.Dropdown(id="atlas-pattern", options=list(PATTERN_TYPES), value="vertical", clearable=False,
                         className="atlas-small", style={"display": "none"}),
            dcc.Dropdown(id="atlas-direction", options=list(DIRECTIONS), value=DIRECTIONS[0], clearable=False,
                         className="atlas-small", style={"display": "none"}),
            dcc.Graph(id="atlas-map", config={"displaylogo": False}, style={"height": "420px"}),
            dcc.Graph(id="atlas-chart", config={"displaylogo": False}, style={"height": "320px"}),
            html.Div(id="atlas-focus", className="small"),
            html.Div(id="atlas-table"),
        ], className="panel"),
    ], className="atlas")


# -- turning results into views ---------------------------------------------------------------------
def inspector_href(prefix: str, layer: int, head: int) -> str:
    """The inspector focused on one head; only integers go into the URL."""
    return f"{prefix}?layer={int(layer)}&head={int(head)}"


def head_grid(kind: str, result: dict[str, Any], statistic: str, pattern: str) -> tuple[np.ndarray, str] | None:
    """The ``[layers, heads]`` values a layer x head map shows for this result, and its title."""
    if kind in ("single-head", "importance", "similarity"):
        name = {"single-head": "delta", "importance": "importance", "similarity": "similarity"}[kind]
        return np.asarray(result[name], dtype=np.float32), name
    if kind in ("stats", "patterns"):
        layers = 1 + max(h["layer"] for h in result["heads"])
        heads = 1 + max(h["head"] for h in result["heads"])
        grid = np.zeros((layers, heads), dtype=np.float32)
        for entry in result["heads"]:
            if kind == "stats":
                grid[entry["layer"], entry["head"]] = entry[statistic]
            else:
                grid[entry["layer"], entry["head"]] = entry["counts"][pattern] / max(result["n"], 1)
        return grid, statistic if kind == "stats" else f"share of examples: {pattern}"
    return None


def map_figure(grid: np.ndarray, title: str, diverging: bool) -> go.Figure:
    layers, heads = grid.shape
    limit = float(np.abs(grid).max()) or 1.0
    figure = go.Figure(go.Heatmap(
        z=grid, x=list(range(heads)), y=list(range(layers)), colorscale="RdBu" if diverging else "Viridis",
        zmid=0 if diverging else None, zmin=-limit if diverging else None, zmax=limit if diverging else None,
        hovertemplate="L%{y}H%{x}: %{z:.4f}<extra></extra>", colorbar={"title": {"text": title}},
    ))
    figure.update_layout(margin={"l": 50, "r": 10, "t": 30, "b": 40}, title={"text": f"{title} (layer x head)"},
                         xaxis={"title": "head", "dtick": 1}, yaxis={"title": "layer", "dtick": 1})
    return figure


def holm_summary(significant: list) -> str:
    """How many of a sweep's cells survive Holm's correction, in words."""
    flags = np.asarray(significant, dtype=bool)
    return (f"{int(flags.sum())} of {flags.size} survive Holm's correction (p_holm <= 0.05); "
            "the others are within what chance gives on these examples")


def mark_significant(figure: go.Figure, significant: list) -> go.Figure:
    """Circle the cells of a single-head map whose effect survives Holm's correction, and say how many."""
    flags = np.asarray(significant, dtype=bool)
    layers, heads = np.nonzero(flags)
    figure.add_scatter(x=heads.tolist(), y=layers.tolist(), mode="markers", name="p_holm <= 0.05",
                       marker={"symbol": "circle-open", "size": 16, "color": "black", "line": {"width": 2}},
                       hovertemplate="L%{y}H%{x}: survives Holm's correction<extra></extra>", showlegend=False)
    figure.update_layout(title={"text": f"{figure.layout.title.text}: circled, {holm_summary(flags)}"})
    return figure


def chart_figure(kind: str, result: dict[str, Any]) -> go.Figure | None:
    """The per-layer bars, the pruning curve, the greedy path or the pattern distributions."""
    figure = go.Figure()
    if kind == "layer":
        flags = result.get("significant") or [False] * len(result["delta"])
        figure.add_bar(x=[f"layer {i}" for i in range(len(result["delta"]))], y=result["delta"],
                       marker={"color": ["#b2182b" if f else "#bbbbbb" for f in flags]})
        survive = f"; dark: {holm_summary(flags)}" if "significant" in result else ""
        figure.update_layout(title={"text": f"change of {result['metric']} with the layer disabled "
                                            f"({result['mode']}){survive}"})
    elif kind == "pruning":
        points = result["points"]
        figure.add_scatter(x=[100 * p["share"] for p in points], y=[p["score"] for p in points], mode="lines+markers")
        figure.update_layout(title={"text": f"{result['metric']} vs % of heads pruned ({result['mode']})"},
                             xaxis={"title": "% of heads pruned"}, yaxis={"title": result["metric"]})
    elif kind == "greedy":
        steps = result["steps"]
        labels = ["none"] + ["+L{}H{}".format(*s["added"]) for s in steps]
        figure.add_scatter(x=labels, y=[result["baseline"]] + [s["score"] for s in steps], name=result["split"])
        if result.get("held_out"):
            figure.add_scatter(x=labels, y=[result["held_out_baseline"]] + [s["held_out_score"] for s in steps],
                               name=f"{result['held_out']} (held out)")
        figure.update_layout(title={"text": "greedy path: chosen on the first, checked on the held-out split"})
    elif kind == "patterns":
        for name in PATTERN_TYPES:
            figure.add_bar(x=[f"layer {i}" for i in range(len(result["layers"]))],
                           y=[layer[name] for layer in result["layers"]], name=name)
        total = sum(result["model"].values()) or 1
        shares = ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in result["model"].items())
        figure.update_layout(barmode="stack", title={"text": f"pattern types per layer; model: {shares}"})
    else:
        return None
    figure.update_layout(margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return figure


def table_rows(kind: str, result: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """One row per head (or step), with a link to the head in the inspector."""
    def link(layer: int, head: int) -> str:
        return f"[L{int(layer)}H{int(head)}]({inspector_href(prefix, layer, head)})"

    if kind in ("stats", "patterns"):
        rows = []
        for entry in result["heads"]:
            row = {"head": link(entry["layer"], entry["head"]), "layer": entry["layer"], "h": entry["head"]}
            if kind == "stats":
                row.update({name: round(entry[name], 4) for name in STATISTICS})
                row["labels"] = " ".join(entry["labels"])
            else:
                row.update(entry["counts"])
                row["most often"] = max(entry["counts"], key=entry["counts"].get)
            rows.append(row)
        return rows
    if kind in ("single-head", "importance", "similarity"):
        name = {"single-head": "delta", "importance": "importance", "similarity": "similarity"}[kind]
        return [{"head": link(layer, head), "layer": layer, "h": head, name: round(value, 5)}
                for layer, row in enumerate(result[name]) for head, value in enumerate(row)]
    if kind == "layer":
        return [{"layer": layer, "delta": round(value, 5)} for layer, value in enumerate(result["delta"])]
    if kind == "pruning":
        return [{"pruned": p["pruned"], "share": round(p["share"], 3), "score": round(p["score"], 4),
                 "heads removed": " ".join(f"L{h[0]}H{h[1]}" for h in p["heads"])} for p in result["points"]]
    if kind == "greedy":
        return [{"step": i + 1, "added": link(*s["added"]), "score": round(s["score"], 4),
                 "delta": round(s["delta"], 4), "held-out score": s.get("held_out_score"),
                 "held-out delta": s.get("held_out_delta")} for i, s in enumerate(result["steps"])]
    return []


def _table(rows: list[dict[str, Any]]) -> Component:
    if not rows:
        return html.Div()
    columns = [{"name": key, "id": key, "presentation": "markdown"} if key in ("head", "added", "best head")
               else {"name": key, "id": key} for key in rows[0]]
    return dash_table.DataTable(data=rows, columns=columns, sort_action="native", page_size=24,
                                markdown_options={"link_target": "_self"},
                                style_table={"overflowX": "auto"}, style_cell={"fontSize": 12, "padding": "2px 6px"})


# -- callbacks ----------------------------------------------------------------------------------------------
def register_callbacks(app: Dash, api: ApiClient) -> None:
    inspector = app.get_relative_path("/")

    @app.callback(Output("atlas-job", "data"), Output("atlas-status", "children", allow_duplicate=True),
                  Input("atlas-kind", "value"), Input("atlas-mode", "value"), Input("atlas-split", "value"),
                  Input("atlas-limit", "value"), Input("atlas-run", "n_clicks"), Input("atlas-measure", "value"),
                  State("atlas-model", "data"), prevent_initial_call="initial_duplicate")
    def choose_job(kind, mode, split, limit, _clicks, measure, model):
        """A finished or running job for the controls (shown at once), or a new one when Run is pressed."""
        request = _request(kind, mode, split, int(limit or 0), model["splits"], measure or "weights")
        try:
            if ctx.triggered_id == "atlas-run":
                return api.start_job(request), "starting…"
            for job in api.jobs():
                if _matches(job, request) and job["state"] in ("done", "running", "queued"):
                    return job["id"], ""
        except ApiError as exc:
            return None, exc.message
        return None, "not computed yet for these settings: press Run"

    @app.callback(Output("atlas-result", "data"), Output("atlas-status", "children"),
                  Output("atlas-progress", "value"), Output("atlas-poll", "disabled"),
                  Output("atlas-source", "children"),
                  Input("atlas-job", "data"), Input("atlas-poll", "n_intervals"), Input("atlas-cancel", "n_clicks"),
                  prevent_initial_call=True)
    def follow_job(job_id, _ticks, _cancel):
        """Progress and time left while the job runs; its result once done."""
        if not job_id:
            return None, no_update, "0", True, ""
        try:
            job = api.cancel_job(job_id) if ctx.triggered_id == "atlas-cancel" else api.job(job_id)
        except ApiError as exc:
            return None, exc.message, "0", True, ""
        source = f"numbers from GET /api/jobs/{job['id']} (job {job['kind']}, {job['params']})"
        if job["state"] in ("queued", "running"):
            eta = f", about {job['eta_s']:.0f} s left" if job.get("eta_s") is not None else ""
            status = f"{job['state']}: {100 * job['progress']:.0f} % done{eta}"
            return no_update, status, str(job["progress"]), False, source
        if job["state"] == "done":
            took = f" in {job['elapsed_s']:.0f} s" if job.get("elapsed_s") else ""
            status = "done" + (" (stored result)" if job.get("stored") else took)
            return {"kind": job["kind"], "result": job["result"], "params": job["params"]}, status, "1", True, source
        return None, f"{job['state']}: {job.get('error') or 'stopped'}", "0", True, source

    @app.callback(Output("atlas-map", "figure"), Output("atlas-map", "style"), Output("atlas-chart", "figure"),
                  Output("atlas-chart", "style"), Output("atlas-table", "children"),
                  Output("atlas-statistic", "style"), Output("atlas-pattern", "style"),
                  Output("atlas-direction", "style"),
                  Input("atlas-result", "data"), Input("atlas-statistic", "value"), Input("atlas-pattern", "value"),
                  Input("atlas-direction", "value"), State("atlas-model", "data"))
    def show_result(data, statistic, pattern, direction, model):
        hidden, shown = {"display": "none"}, {"height": "420px"}
        empty = go.Figure()
        if not data:
            return empty, hidden, empty, hidden, html.Div(), hidden, hidden, hidden
        kind, result = data["kind"], data["result"]
        pick = {"width": "220px"}
        if kind == "syntax":  # Clark et al.'s table, both directions; the relation x head map of one
            heat = relation_head_figure(result, direction, model["num_heads"])
            height = {"height": f"{max(420, 24 * len(heat.data[0].y or ()) + 160)}px"}
            rows = syntax_rows(result, lambda layer, head: inspector_href(inspector, layer, head))
            return (heat, height, empty, hidden, _table(rows), hidden, hidden,
                    {"width": "260px"})
        grid = head_grid(kind, result, statistic, pattern)
        heat = map_figure(grid[0], grid[1], diverging=kind == "single-head") if grid else empty
        if kind == "single-head" and "significant" in result:
            heat = mark_significant(heat, result["significant"])
        chart = chart_figure(kind, result)
        if kind == "stats" and not result.get("word_level"):  # weight vs norm share per head, when both exist
            try:
                pair = stats_pair(api, data.get("params", {}), result)
            except ApiError:
                pair = None
            chart = compare_figure(*pair) if pair else None
        return (heat, shown if grid else hidden, chart or empty, {"height": "320px"} if chart else hidden,
                _table(table_rows(kind, result, inspector)), pick if kind == "stats" else hidden,
                pick if kind == "patterns" else hidden, hidden)

    @app.callback(Output("atlas-mode", "disabled"), Input("atlas-kind", "value"))
    def mode_applies(kind):
        """Statistics, patterns and similarity read the unablated model: no mode to choose."""
        return kind not in MODE_KINDS

    @app.callback(Output("atlas-measure", "disabled"), Input("atlas-kind", "value"))
    def measure_applies(kind):
        """Only the statistics read a measure other than the weights."""
        return kind != "stats"

    @app.callback(Output("atlas-focus", "children"), Input("atlas-map", "clickData"), prevent_initial_call=True)
    def open_head(click):
        """A click on the map offers the head in the inspector (a shareable link)."""
        chosen = clicked_head(click)  # the syntax map names its head in customdata
        try:
            point = click["points"][0]
            layer, head = chosen or (int(point["y"]), int(point["x"]))
        except (TypeError, KeyError, IndexError, ValueError):
            return no_update
        return html.Span([f"L{layer}H{head}: ", dcc.Link("open in the inspector",
                                                         href=inspector_href(inspector, layer, head))])


PAGE = Page(slug="atlas", title="Atlas", layout=layout, register_callbacks=register_callbacks)
