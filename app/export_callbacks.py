"""Downloads. Numbers (CSV or JSON of the view; the focused head's matrix as CSV) are built here from the
API's answers and sent with Dash's download component; figures (PNG or SVG of what is on screen) are
drawn in the browser (`exportFigure`); the view as one standalone HTML file is built here by the builder
``hs.export_html`` uses (app/html_export.py)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, no_update
from dash.exceptions import PreventUpdate
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.attention_callbacks import input_of
from headscope.app.clientside import js
from headscope.app.html_export import FILENAME, view_html
from headscope.app.urlstate import ModelShape, ViewState, head_name, parse_query

Payload = dict[str, Any]


def view_label(state: ViewState) -> str:
    """A file name part for the mask and mode: L1H2+L3H0-uniform, none-zero."""
    return f"{'+'.join(head_name(*h) for h in state.off) or 'none'}-{state.mode}"


def numbers(api: ApiClient, state: ViewState, model_info: Payload, link: str) -> Payload:
    """Everything the view shows as numbers, each saying how it was made."""
    text, pair = input_of(api, state, model_info)
    result = api.evaluate(state.off, state.mode)
    example = api.dev_example(model_info["fingerprint"], state.ex) if state.ex is not None else None
    return {
        "model": model_info["name"], "fingerprint": model_info["fingerprint"], "task": model_info["task"]["name"],
        "split": result["split"], "metric": result["metric"], "mode": state.mode, "measure": state.measure,
        "off": [head_name(*h) for h in state.off],
        **{key: result[key] for key in ("score", "baseline", "delta", "n", "flipped")},
        "significance": result.get("significance"),
        "input": {"ex": state.ex, "text": text, "text_pair": pair, "gold": example["label"] if example else None},
        "focus": head_name(state.layer, state.head), "labels": model_info["labels"],
        "prediction": api.prediction(text, pair, state.off, state.mode),
        "baseline_prediction": api.prediction(text, pair, [], "zero"),
        "url": link,
    }


def as_csv(rows: list[list[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def numbers_csv(data: Payload) -> str:
    rows: list[list[Any]] = [["quantity", "value"]]
    rows += [[key, data[key]] for key in ("model", "fingerprint", "task", "split", "metric", "mode", "measure",
                                          "score", "baseline", "delta", "n", "focus", "url")]
    rows += [["off", " ".join(data["off"])], ["flipped", " ".join(map(str, data["flipped"]))],
             ["input", f"ex={data['input']['ex']}" if data["input"]["ex"] is not None else data["input"]["text"]]]
    for name, title in (("prediction", ""), ("baseline_prediction", "baseline ")):
        rows.append([f"{title}prediction", data[name]["label"]])
        rows += [[f"{title}prob {label}", p] for label, p in zip(data["labels"], data[name]["probs"], strict=True)]
    return as_csv(rows)


def make_export_numbers(api: ApiClient):
    def export_numbers(_csv: int, _json: int, _head: int, search: str | None, link: str | None,
                       model_info: Payload | None) -> dict:
        """A button -> the file: the view's numbers as CSV or JSON, or the focused head's matrix as CSV."""
        if not ctx.triggered_id or not model_info:
            raise PreventUpdate
        state, _ = parse_query(search or "", ModelShape.from_model_info(model_info))
        try:
            if ctx.triggered_id == "export-head-csv":
                text, pair = input_of(api, state, model_info)
                rollout = state.measure == "rollout"  # one map per layer: the focused layer's
                answer = api.attention(text, pair, state.off, state.mode, measure=state.measure,
                                       heads=None if rollout else [[state.layer, state.head]])
                values = answer["layers"][state.layer]["values"] if rollout else answer["heads"][0]["values"]
                rows = [[f"from\\to ({state.measure})", *answer["tokens"]]]
                rows += [[token, *(f"{v:.5f}" for v in row)]
                         for token, row in zip(answer["tokens"], values, strict=True)]
                focus = f"L{state.layer}-rollout" if rollout else head_name(state.layer, state.head)
                name = f"headscope-{focus}-{view_label(state)}.csv"
                return dcc.send_string(as_csv(rows), name, type="text/csv")
            data = numbers(api, state, model_info, link or "")
        except ApiError as exc:
            return dcc.send_string(f"export failed: {exc.message}\n", "headscope-export-error.txt")
        if ctx.triggered_id == "export-json":
            return dcc.send_string(json.dumps(data, indent=2) + "\n", f"headscope-{view_label(state)}.json",
                                   type="application/json")
        return dcc.send_string(numbers_csv(data), f"headscope-{view_label(state)}.csv", type="text/csv")

    return export_numbers


def register(app: Dash, api: ApiClient) -> None:
    app.callback(Output("download", "data"), Input("export-csv", "n_clicks"), Input("export-json", "n_clicks"),
                 Input("export-head-csv", "n_clicks"), State("url", "search"), State("share-url", "value"),
                 State("model-info", "data"), prevent_initial_call=True)(make_export_numbers(api))
    app.clientside_callback(js("exportFigure"), Output("figure-export", "data"),
                            Input({"export": ALL, "format": ALL}, "n_clicks"), State("page-search", "data"),
                            State("grid-attention", "data"), State("model-info", "data"), prevent_initial_call=True)

    @app.callback(Output("download-html", "data"), Output("export-status", "children"),
                  Input("export-html", "n_clicks"), State("url", "search"), State("share-url", "value"),
                  State("model-info", "data"), prevent_initial_call=True)
    def download_view_html(_clicks: int, search: str | None, share_url: str | None,
                           model_info: Payload | None) -> tuple[Any, str]:
        """The export row's HTML button -> the current view as one offline HTML file."""
        if not model_info:
            raise PreventUpdate
        state, _ = parse_query(search or "", ModelShape.from_model_info(model_info))
        try:
            return dcc.send_string(view_html(api, state, model_info, share_url or None), FILENAME), ""
        except ApiError as exc:
            return no_update, f"HTML export failed: {exc.message}"
