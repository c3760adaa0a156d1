"""The atlas page (path "/atlas"): per-head statistics, pattern types and ablation sweeps of the whole model.

Everything comes from the API's jobs (``/api/jobs``), and so does what the page offers: the kinds, which
of them take a mode and which extra parameters (`GET /api/jobs/kinds`), the modes (`/api/model`), the
statistics and pattern types a result names. Choosing an analysis asks the server for that request's job
(`POST /api/jobs/lookup`: the server alone decides what "the same job" is) and shows a finished result
at once; otherwise "Run" starts it, and its progress and time left show until it is done. Each view
names the API call that returns its numbers. Clicking a head (map or table) opens it in the inspector
under the job's own mask and mode, with a URL made by app/urlstate.py from integers read from the result.

Adding a kind needs nothing here unless its result needs a new view: its parameters get controls from
the catalogue (`param_control`), and its result is drawn by `head_grid`, `chart_figure`, `table_rows` (a
pairs result by `pairs_figure`: the interaction and delta matrices; a click on a cell offers both heads off).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import ALL, Dash, Input, Output, State, ctx, dash_table, dcc, html, no_update
from dash.development.base_component import Component
from headscope.app import formatting, palette
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.measure_compare import compare_figure
from headscope.app.page import Page
from headscope.app.syntax_view import DIRECTIONS, clicked_head, relation_head_figure, syntax_rows
from headscope.app.urlstate import HEAD_NAME, ViewState, head_name, to_query
from plotly.subplots import make_subplots

LIMITS = (("all of the split", 0), ("first 100", 100), ("first 300", 300), ("first 1000", 1000))
POLL_MS = 1000
Payload = dict[str, Any]
Head = tuple[int, int]


# -- the request the controls make ------------------------------------------------------------------------
def param_control(param: Payload) -> Component:
    """A control for one of a kind's extra parameters, as `GET /api/jobs/kinds` describes it."""
    control_id = {"job-param": param["name"]}
    if param["type"] == "boolean":
        control = dcc.Checklist(id=control_id, options=[{"label": param["name"], "value": "on"}],
                                value=["on"] if param["default"] else [], inline=True)
    elif param["type"] == "choice":
        control = dcc.Dropdown(id=control_id, options=param["choices"], value=param["default"], clearable=False,
                               className="atlas-small")
    elif param["type"] == "integer":
        control = dcc.Input(id=control_id, type="number", min=1, step=1, value=param["default"],
                            style={"width": "70px"})
    else:  # heads: written as in the inspector's links, L3H7,L5H1
        control = dcc.Input(id=control_id, type="text", value="", placeholder="L3H7,L5H1", debounce=True,
                            style={"width": "140px"})
    label = [] if param["type"] == "boolean" else [html.Span(param["name"], className="muted small")]
    return html.Span([*label, control], title=param["description"], className="atlas-param")


def param_value(kind_param: Payload, raw: Any) -> Any:
    """A control's value as the job request wants it."""
    if kind_param["type"] == "boolean":
        return bool(raw)
    if kind_param["type"] == "heads":  # none written: the parameter's default (pairs: every head)
        return [[int(m[1]), int(m[2])] for m in HEAD_NAME.finditer(raw or "")] or kind_param["default"]
    return raw


def job_request(kind: Payload, mode: str, split: str, limit: int, params: dict[str, Any]) -> Payload:
    """The job request for the controls (the server normalises it; see `POST /api/jobs/lookup`)."""
    request = {"kind": kind["kind"], "mode": mode, "split": split, "limit": limit or None}
    by_name = {p["name"]: p for p in kind["params"]}
    request.update({name: param_value(by_name[name], value) for name, value in params.items() if name in by_name})
    return request


def describe_params(params: Payload) -> str:
    """A job's canonical parameters in words (the atlas's source line)."""
    parts = [f"job {params['kind']}"]
    if params.get("mode"):
        parts.append(f"mode {params['mode']}")
    parts.append(f"split {params['split']}")
    parts.append(f"first {params['limit']} examples" if params.get("limit") else "all examples")
    for name, value in params.items():
        if name in ("kind", "mode", "split", "limit") or value in (None, [], False):
            continue
        if name in ("ablate", "heads"):  # head lists as the inspector's links write them
            value = ",".join(head_name(*h) for h in value)
        parts.append(f"{name.replace('_', ' ')} {value}")
    return " · ".join(parts)


def counterpart_request(params: Payload) -> Payload:
    """The stats job on the same examples in the other measure (weights <-> norm)."""
    other = "weights" if params.get("measure") == "norm" else "norm"
    return {"kind": "stats", "mode": None, "split": params["split"], "limit": params.get("limit"), "measure": other}


def stats_pair(api: ApiClient, params: Payload, result: Payload) -> tuple[Payload, Payload] | None:
    """A finished stats result and its counterpart in the other measure on the same examples, as (weights,
    norm), when the server has both (found by `POST /api/jobs/lookup`)."""
    wanted = counterpart_request(params)
    found = api.find_job(wanted)
    if found["job"] is None or found["job"]["state"] != "done":
        return None
    other = api.job(found["id"])["result"]
    return (other, result) if wanted["measure"] == "weights" else (result, other)


# -- layout -----------------------------------------------------------------------------------------------
def _controls(splits: list[str], catalogue: Payload, modes: dict[str, str]) -> html.Div:
    return html.Div([
        dcc.Dropdown(id="atlas-kind", options=[{"label": k["title"], "value": k["kind"]} for k in catalogue["kinds"]],
                     value=catalogue["kinds"][0]["kind"], clearable=False, className="atlas-kind"),
        dcc.Dropdown(id="atlas-mode", options=[{"label": mode, "value": mode, "title": meaning}
                                               for mode, meaning in modes.items()],
                     value=next(iter(modes)), clearable=False, className="atlas-small"),
        dcc.Dropdown(id="atlas-split", options=splits, value="dev" if "dev" in splits else splits[0],
                     clearable=False, className="atlas-small"),
        dcc.Dropdown(id="atlas-limit", options=[{"label": label, "value": value} for label, value in LIMITS],
                     value=0, clearable=False, className="atlas-small"),
        html.Span(id="atlas-params", style={"display": "flex", "gap": "8px", "alignItems": "center"}),
        html.Button("Run", id="atlas-run", className="button primary", n_clicks=0),
        html.Button("Cancel", id="atlas-cancel", className="button", n_clicks=0),
    ], className="atlas-controls", style={"display": "flex", "gap": "8px", "alignItems": "center",
                                          "flexWrap": "wrap"})


def layout(api: ApiClient) -> Component:
    """Built per visit from `/api/model` and `/api/jobs/kinds`, so the page offers what the server runs."""
    try:
        info = api.model()
        catalogue = api.job_kinds()
    except ApiError as exc:
        return html.Div([html.H2("Atlas unavailable"), html.P(exc.message)], className="panel unavailable",
                        role="alert")
    splits = list(info["task"]["splits"])
    return html.Div([
        dcc.Store(id="atlas-model", data={"splits": info["task"]["splits"], "num_layers": info["num_layers"],
                                          "num_heads": info["num_heads"], "catalogue": catalogue}),
        dcc.Store(id="atlas-job"),
        dcc.Store(id="atlas-result"),
        dcc.Interval(id="atlas-poll", interval=POLL_MS, disabled=True),
        html.Section([
            html.Div(html.H2(f"Atlas of {info['name']} on {info['task']['name']}"), className="section-head"),
            _controls(splits, catalogue, info["ablation_modes"]),
            html.Div([html.Progress(id="atlas-progress", value="0", max="1", style={"width": "240px"}),
                      html.Span(id="atlas-status", className="muted small", role="status")],
                     style={"display": "flex", "gap": "10px", "alignItems": "center", "marginTop": "6px"}),
            html.Div(id="atlas-source", className="muted small"),
        ], className="panel"),
        html.Section([
            dcc.Dropdown(id="atlas-statistic", options=catalogue["statistics"], value=catalogue["statistics"][0],
                         clearable=False, className="atlas-small", style={"display": "none"}),
            dcc.Dropdown(id="atlas-pattern", options=catalogue["pattern_types"], value=catalogue["pattern_types"][0],
                         clearable=False, className="atlas-small", style={"display": "none"}),
            dcc.Dropdown(id="atlas-direction", options=list(DIRECTIONS), value=DIRECTIONS[0], clearable=False,
                         className="atlas-small", style={"display": "none"}),
            dcc.Graph(id="atlas-map", config={"displaylogo": False}, style={"height": "420px"}),
            dcc.Graph(id="atlas-chart", config={"displaylogo": False}, style={"height": "320px"}),
            html.Div(id="atlas-focus", className="small"),
            html.Div(id="atlas-table"),
        ], className="panel"),
    ], className="atlas")


# -- turning results into views ---------------------------------------------------------------------
def inspector_href(prefix: str, layer: int, head: int, off: list[Head] | tuple[Head, ...] = (),
                   mode: str | None = None) -> str:
    """The inspector focused on one head under a mask and mode; a link app/urlstate.py writes."""
    state = ViewState(layer=int(layer), head=int(head), off=tuple((int(a), int(b)) for a, b in off),
                      mode=mode or ViewState.mode)
    return prefix + to_query(state)


def head_grid(kind: str, result: Payload, statistic: str, pattern: str) -> tuple[np.ndarray, str] | None:
    """The ``[layers, heads]`` values a layer x head map shows for this result, and its title."""
    if kind in ("single-head", "importance", "similarity", "means"):
        name = {"single-head": "delta", "importance": "importance", "similarity": "similarity", "means": "norm"}[kind]
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
    """Layers as rows from the top (layer 0 first, as in the inspector's grid), heads as columns."""
    layers, heads = grid.shape
    limit = float(np.abs(grid).max()) or 1.0
    figure = go.Figure(go.Heatmap(
        z=grid, x=list(range(heads)), y=list(range(layers)),
        colorscale=palette.DIVERGING if diverging else palette.SEQUENTIAL,
        zmid=0 if diverging else None, zmin=-limit if diverging else None, zmax=limit if diverging else None,
        hovertemplate="L%{y}H%{x}: %{z:" + ("+.3f" if diverging else ".4f") + "}<extra></extra>",
        colorbar={"title": {"text": title}},
    ))
    figure.update_layout(margin={"l": 50, "r": 10, "t": 30, "b": 40}, title={"text": f"{title} (layer x head)"},
                         xaxis={"title": "head", "dtick": 1},
                         yaxis={"title": "layer", "dtick": 1, "autorange": "reversed"})
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


def upper_flags(flags: list[list[bool | None]], diagonal: bool) -> list[bool]:
    """A pairs matrix's flags of its own family: the cells i < j (and i == j with `diagonal`), row by row."""
    return [bool(row[j]) for i, row in enumerate(flags) for j in range(i if diagonal else i + 1, len(row))]


# One panel of the pairs view: result field, its flags, its Holm p-values, whether the diagonal belongs, words.
PAIR_PANELS = (("interaction", "interaction_significant", "interaction_p_holm", False,
                "interaction: delta of both off minus each alone's"),
               ("delta", "significant", "p_holm", True, "delta: both heads off (diagonal: the head alone)"))


def pairs_figure(result: Payload) -> go.Figure:
    """A pairs job as two matrices over its heads in layer order (the first on top, as in the inspector):
    the interaction beside the delta, on one diverging scale centred on 0, the cells that survive Holm's
    correction circled and counted in the title."""
    names = [head_name(*h) for h in result["heads"]]
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                           subplot_titles=[panel[4] for panel in PAIR_PANELS])
    values = [[list(row) for row in result[panel[0]]] for panel in PAIR_PANELS]  # lists: the page reads them
    for i in range(len(names)):
        values[0][i][i] = None  # no interaction of a head with itself
    counts = []
    for column, (name, flag_name, p_name, diagonal, _) in enumerate(PAIR_PANELS, start=1):
        grid = values[column - 1]
        text = [[f"{formatting.p_value(p)} after Holm" if p is not None else "" for p in row]
                for row in result[p_name]]
        figure.add_heatmap(z=grid, x=names, y=names, coloraxis="coloraxis", text=text, row=1, col=column,
                           hovertemplate=f"%{{y}} and %{{x}} off: {name} %{{z:+.3f}}<br>%{{text}}<extra></extra>")
        rows, cols = np.nonzero([[bool(f) for f in row] for row in result[flag_name]])
        figure.add_scatter(x=[names[j] for j in cols], y=[names[i] for i in rows], mode="markers", row=1, col=column,
                           marker={"symbol": "circle-open", "size": 14, "color": "black", "line": {"width": 2}},
                           hovertemplate=f"%{{y}} and %{{x}}: {name} survives Holm's correction<extra></extra>",
                           showlegend=False)
        counts.append(f"{name}: {holm_summary(upper_flags(result[flag_name], diagonal))}")
    limit = max(abs(v) for grid in values for row in grid for v in row if v is not None) or 1.0
    ticks = len(names) <= 48
    figure.update_xaxes(type="category", showticklabels=ticks, tickfont={"size": 9}, showgrid=False)
    figure.update_yaxes(type="category", autorange="reversed", showticklabels=ticks, tickfont={"size": 9},
                        showgrid=False)
    figure.update_layout(
        coloraxis={"colorscale": palette.DIVERGING, "cmid": 0, "cmin": -limit, "cmax": limit,
                   "colorbar": {"title": {"text": f"change of {result['metric']}"}}},
        title={"text": f"{len(names)} heads, mode {result['mode']}, n = {result['n']}; circled: "
                       + "<br>".join(counts), "font": {"size": 12}},
        margin={"l": 60, "r": 10, "t": 110, "b": 50}, plot_bgcolor=palette.LINE)  # grey: no interaction cell
    return figure


def pairs_height(result: Payload) -> str:
    """The pairs view's height: cells about 14 px, within 460 to 900 px."""
    return f"{min(900, max(460, 14 * len(result['heads']) + 200))}px"


def clicked_pair(click: Payload | None) -> tuple[Head, Head] | None:
    """The (row head, column head) of a clicked cell of the pairs view (its axes are head names), or None."""
    try:
        point = click["points"][0]
        row, column = HEAD_NAME.fullmatch(str(point["y"])), HEAD_NAME.fullmatch(str(point["x"]))
    except (TypeError, KeyError, IndexError):
        return None
    if row is None or column is None:
        return None
    return (int(row[1]), int(row[2])), (int(column[1]), int(column[2]))


def pair_href(prefix: str, pair: tuple[Head, Head], mode: str | None) -> str:
    """The inspector focused on the row head with both heads off, in the sweep's mode."""
    return inspector_href(prefix, *pair[0], off=sorted(set(pair)), mode=mode)


def chart_figure(kind: str, result: Payload, pattern_types: list[str]) -> go.Figure | None:
    """The per-layer bars, the pruning curve, the greedy path or the pattern distributions."""
    figure = go.Figure()
    if kind == "layer":
        flags = result.get("significant") or [True] * len(result["delta"])
        colours = [(palette.DOWN if d < 0 else palette.UP) if flag else palette.NEUTRAL
                   for d, flag in zip(result["delta"], flags, strict=True)]
        figure.add_bar(x=[f"layer {i}" for i in range(len(result["delta"]))], y=result["delta"],
                       marker={"color": colours})
        survive = f"; grey: not significant, {holm_summary(flags)}" if "significant" in result else ""
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
        for name in pattern_types:
            figure.add_bar(x=[f"layer {i}" for i in range(len(result["layers"]))],
                           y=[layer[name] for layer in result["layers"]], name=name)
        total = sum(result["model"].values()) or 1
        shares = ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in result["model"].items())
        figure.update_layout(barmode="stack", title={"text": f"pattern types per layer; model: {shares}"})
    else:
        return None
    figure.update_layout(margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return figure


def table_rows(kind: str, result: Payload, params: Payload, prefix: str, statistics: list[str]) -> list[Payload]:
    """One row per head (or step), each head a link to the inspector under the job's mask and mode."""
    mode = params.get("mode")

    def link(layer: int, head: int, off: list[Head]) -> str:
        return f"[L{int(layer)}H{int(head)}]({inspector_href(prefix, layer, head, off, mode)})"

    own_mask = [tuple(h) for h in params.get("ablate") or []]
    if kind in ("stats", "patterns"):
        rows = []
        for entry in result["heads"]:
            row = {"head": link(entry["layer"], entry["head"], own_mask), "layer": entry["layer"], "h": entry["head"]}
            if kind == "stats":
                row.update({name: formatting.number(entry[name]) for name in statistics if name in entry})
                row["labels"] = " ".join(entry["labels"])
            else:
                row.update(entry["counts"])
                row["most often"] = max(entry["counts"], key=entry["counts"].get)
            rows.append(row)
        return rows
    if kind == "single-head":
        return [{"head": link(layer, head, [(layer, head)]), "layer": layer, "h": head,
                 "delta": formatting.delta(value)}
                for layer, row in enumerate(result["delta"]) for head, value in enumerate(row)]
    if kind in ("importance", "similarity"):
        return [{"head": link(layer, head, own_mask), "layer": layer, "h": head, kind: formatting.number(value)}
                for layer, row in enumerate(result[kind]) for head, value in enumerate(row)]
    if kind == "layer":
        return [{"layer": layer, "delta": formatting.delta(value)} for layer, value in enumerate(result["delta"])]
    if kind == "pairs":
        heads = [tuple(h) for h in result["heads"]]

        def pair_link(i: int, j: int) -> str:
            href = pair_href(prefix, (heads[i], heads[j]), mode)
            return f"[{head_name(*heads[i])} + {head_name(*heads[j])}]({href})"

        return [{"pair": pair_link(i, j),
                 "delta": formatting.delta(result["delta"][i][j]),
                 "interaction": formatting.delta(result["interaction"][i][j]),
                 "interaction p_holm": formatting.number(result["interaction_p_holm"][i][j]),
                 "delta p_holm": formatting.number(result["p_holm"][i][j])}
                for i in range(len(heads)) for j in range(i + 1, len(heads))]
    if kind == "pruning":
        return [{"pruned": p["pruned"], "share": f"{100 * p['share']:.0f} %", "score": formatting.score(p["score"]),
                 "delta": formatting.delta(p["delta"]),
                 "heads removed": " ".join(f"L{h[0]}H{h[1]}" for h in p["heads"])} for p in result["points"]]
    if kind == "greedy":
        return [{"step": i + 1, "added": link(*s["added"], [tuple(h) for h in s["heads"]]),
                 "score": formatting.score(s["score"]), "delta": formatting.delta(s["delta"]),
                 "held-out score": formatting.score(s.get("held_out_score")),
                 "held-out delta": formatting.delta(s.get("held_out_delta"))} for i, s in enumerate(result["steps"])]
    return []


def _table(rows: list[Payload]) -> Component:
    if not rows:
        return html.Div()
    columns = [{"name": key, "id": key, "presentation": "markdown"} if key in ("head", "added", "best head", "pair")
               else {"name": key, "id": key} for key in rows[0]]
    return dash_table.DataTable(data=rows, columns=columns, sort_action="native", page_size=24,
                                markdown_options={"link_target": "_self"},
                                style_table={"overflowX": "auto"}, style_cell={"fontSize": 12, "padding": "2px 6px"})


# -- callbacks ----------------------------------------------------------------------------------------------
def _kind(model: Payload, name: str) -> Payload:
    return next(k for k in model["catalogue"]["kinds"] if k["kind"] == name)


def register_callbacks(app: Dash, api: ApiClient) -> None:
    inspector = app.get_relative_path("/")

    @app.callback(Output("atlas-params", "children"), Output("atlas-mode", "disabled"),
                  Input("atlas-kind", "value"), State("atlas-model", "data"))
    def show_params(kind, model):
        """The chosen kind's own parameters; the mode only where the kind uses one."""
        chosen = _kind(model, kind)
        return [param_control(p) for p in chosen["params"]], not chosen["uses_mode"]

    @app.callback(Output("atlas-job", "data"), Output("atlas-status", "children", allow_duplicate=True),
                  Input("atlas-kind", "value"), Input("atlas-mode", "value"), Input("atlas-split", "value"),
                  Input("atlas-limit", "value"), Input({"job-param": ALL}, "value"), Input("atlas-run", "n_clicks"),
                  State({"job-param": ALL}, "id"), State("atlas-model", "data"),
                  prevent_initial_call="initial_duplicate")
    def choose_job(kind, mode, split, limit, values, _clicks, ids, model):
        """The server's job for the controls (shown at once when it has one), or a new one when Run is pressed."""
        params = {control["job-param"]: value for control, value in zip(ids, values, strict=True)}
        request = job_request(_kind(model, kind), mode, split, int(limit or 0), params)
        try:
            if ctx.triggered_id == "atlas-run":
                return api.start_job(request), "starting…"
            found = api.find_job(request)
        except ApiError as exc:
            return None, exc.message
        if found["job"] is None:
            return None, "not computed yet for these settings: press Run"
        return found["id"], ""

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
        source = f"numbers from GET /api/jobs/{job['id']}: {describe_params(job['params'])}"
        if job["state"] in ("queued", "running"):
            eta = f", about {job['eta_s']:.0f} s left" if job.get("eta_s") is not None else ""
            status = f"{job['state']}: {100 * job['progress']:.0f} % done{eta}"
            return no_update, status, str(job["progress"]), False, source
        if job["state"] == "done":
            took = f" in {job['elapsed_s']:.0f} s" if job.get("elapsed_s") else ""
            status = "done" + (" (stored result)" if job.get("stored") else took)
            return {"kind": job["kind"], "params": job["params"], "result": job["result"]}, status, "1", True, source
        return None, f"{job['state']}: {job.get('error') or 'stopped'} (press Run to try again)", "0", True, source

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
        kind, result, params = data["kind"], data["result"], data["params"]
        catalogue = model["catalogue"]
        pick = {"width": "220px"}
        if kind == "syntax":  # Clark et al.'s table, both directions; the relation x head map of one
            heat = relation_head_figure(result, direction, model["num_heads"])
            height = {"height": f"{max(420, 24 * len(heat.data[0].y or ()) + 160)}px"}
            own_mask = [tuple(h) for h in params.get("ablate") or []]
            rows = syntax_rows(result, lambda layer, head: inspector_href(inspector, layer, head, own_mask,
                                                                          params.get("mode")))
            return heat, height, empty, hidden, _table(rows), hidden, hidden, {"width": "260px"}
        if kind == "pairs":  # the interaction and delta matrices over the sweep's heads
            rows = table_rows(kind, result, params, inspector, catalogue["statistics"])
            return (pairs_figure(result), {"height": pairs_height(result)}, empty, hidden, _table(rows), hidden,
                    hidden, hidden)
        grid = head_grid(kind, result, statistic, pattern)
        heat = map_figure(grid[0], grid[1], diverging=kind == "single-head") if grid else empty
        if kind == "single-head" and "significant" in result:
            heat = mark_significant(heat, result["significant"])
        chart = chart_figure(kind, result, catalogue["pattern_types"])
        if kind == "stats" and not params.get("word_level"):  # weight vs norm share per head, when both exist
            try:
                pair = stats_pair(api, params, result)
            except ApiError:
                pair = None
            chart = compare_figure(*pair) if pair else None
        rows = table_rows(kind, result, params, inspector, catalogue["statistics"])
        return (heat, shown if grid else hidden, chart or empty, {"height": "320px"} if chart else hidden,
                _table(rows), pick if kind == "stats" else hidden, pick if kind == "patterns" else hidden, hidden)

    @app.callback(Output("atlas-focus", "children"), Input("atlas-map", "clickData"), State("atlas-result", "data"),
                  prevent_initial_call=True)
    def open_head(click, data):
        """A click on the map offers the head in the inspector, under the job's mask and mode (a pairs cell:
        both heads off)."""
        params = data["params"] if data else {}
        if data and data["kind"] == "pairs":
            pair = clicked_pair(click)
            if pair is None:
                return no_update
            names = " and ".join(head_name(*h) for h in sorted(set(pair)))
            return html.Span([f"{names} off ({params.get('mode')}): ", dcc.Link(
                "open in the inspector", id="atlas-open-head", href=pair_href(inspector, pair, params.get("mode")))])
        chosen = clicked_head(click)  # the syntax map names its head in customdata
        try:
            point = click["points"][0]
            layer, head = chosen or (int(point["y"]), int(point["x"]))
        except (TypeError, KeyError, IndexError, ValueError):
            return no_update
        off = [(layer, head)] if data and data["kind"] == "single-head" else \
            [tuple(h) for h in params.get("ablate") or []]
        return html.Span([f"L{layer}H{head}: ", dcc.Link(
            "open in the inspector", id="atlas-open-head",
            href=inspector_href(inspector, layer, head, off, params.get("mode")))])


PAGE = Page(slug="atlas", title="Atlas", layout=layout, register_callbacks=register_callbacks)
