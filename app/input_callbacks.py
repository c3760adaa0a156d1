"""The input panel: the example picker (a page of dev examples, or the examples matching what is typed
into it, from `/api/examples`: never the whole split), and what the current input is and what the model
predicts for it under the mask and unmasked (small `/api/attention` calls with no heads: the API
memoises the forward the heatmaps already paid for)."""

from __future__ import annotations

import re
from typing import Any

from dash import Dash, Input, Output, State, ctx, html
from dash.development.base_component import Component
from dash.exceptions import PreventUpdate
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.attention_callbacks import input_of, request_state

Payload = dict[str, Any]
OPTION_TEXT_CHARS = 110
PICKER_PAGE = 20  # examples the picker offers at a time (each page is predicted by the API when first asked)
EXAMPLE_ID = re.compile(r"#?(\d+)")


def example_option(item: Payload) -> dict[str, Any]:
    """A picker entry: id, gold label, whether the model gets it right, and the start of the text (the
    picker's own filter searches the whole text and the id, as the API did)."""
    text = item["text"] if len(item["text"]) <= OPTION_TEXT_CHARS else item["text"][:OPTION_TEXT_CHARS] + "…"
    verdict = "" if item["predicted"] == item["label"] else f" (model: {item['predicted']})"
    return {"label": f"#{item['id']} · {item['label']}{verdict} · {text}", "value": item["id"],
            "search": f"#{item['id']} {item['text']} {item['text_pair'] or ''}"}


def make_load_examples(api: ApiClient):
    def load_examples(model_info: Payload | None, search: str | None, request: str | None,
                      options: list[Payload] | None) -> tuple[Any, str]:
        """The picker's options: the first page of dev examples, or those whose text contains what is typed
        (or the example whose id is typed, as 12 or #12), with the address's example (`ex` of the
        grid's request, the input the page shows) kept among them. Not an input of the picker's value:
        syncInputs sets that from the address whenever the options change."""
        if not model_info:
            raise PreventUpdate
        value = request_state(request, model_info).ex if request is not None else None
        offered = {option["value"] for option in options or []}
        if ctx.triggered_id == "page-drawn" and offered and (value is None or value in offered):
            raise PreventUpdate  # the input is typed text, or already offered
        if ctx.triggered_id == "example-picker" and not (search or "").strip():
            # the search was cleared, as on picking a found example: new options now would make syncInputs
            # put the old address's example back before the pick reaches the address
            raise PreventUpdate
        query = (search or "").strip()  # too long: the API's 422 (its limit) is shown as the placeholder
        fingerprint = model_info["fingerprint"]
        try:
            answer = api.examples("dev", 0, PICKER_PAGE, q=query or None)
            items = answer["items"]
            wanted = [value]
            if (typed := EXAMPLE_ID.fullmatch(query)) is not None:
                wanted.insert(0, int(typed.group(1)))
            listed = {item["id"] for item in items}
            for ex in wanted:
                if ex is not None and ex not in listed:
                    try:
                        items = [api.dev_example(fingerprint, ex), *items]
                    except ApiError as exc:
                        if not exc.is_bad_input:  # an id beyond the split is simply not offered
                            raise
                    listed.add(ex)
        except ApiError as exc:
            return [], f"Could not load the dev examples: {exc.message}"
        found = f"{answer['total']:,} dev examples contain “{query}”" if query else \
            f"{answer['total']:,} dev examples: pick one, or type to search (words or #id)"
        return [example_option(item) for item in items], found

    return load_examples


def prediction_table(labels: list[str], masked: Payload, baseline: Payload) -> Component:
    rows = [html.Tr([
        html.Td(label, className="predicted" if label == masked["label"] else ""),
        html.Td(html.Div(html.Div(className="fill masked", style={"width": f"{100 * masked['probs'][i]:.1f}%"}),
                         className="bar")),
        html.Td(f"{masked['probs'][i]:.3f}", className="num"),
        html.Td(f"{baseline['probs'][i]:.3f}", className="num muted"),
    ]) for i, label in enumerate(labels)]
    head = html.Thead(html.Tr([html.Th("label"), html.Th(""), html.Th("mask", className="num"),
                               html.Th("baseline", className="num")]))
    return html.Table([head, html.Tbody(rows)], className="probs")


def picker_after_grid(load_examples):
    def load_examples_after_grid(search: str | None, _drawn: str | None, request: str | None,
                                 model_info: Payload | None, options: list[Payload] | None) -> tuple[Any, str]:
        return load_examples(model_info, search, request, options)

    return load_examples_after_grid


def make_show_input(api: ApiClient):
    def show_input(request: str | None, model_info: Payload | None) -> list[Component]:
        """grid-request -> the input (example with its gold label, or the typed text) and the prediction."""
        state = request_state(request, model_info)
        parts: list[Component] = []
        try:
            if state.ex is not None:
                example = api.dev_example(model_info["fingerprint"], state.ex)
                parts.append(html.Div([html.B(f"Dev example #{state.ex}"),
                                       html.Span(f" · gold: {example['label']}", className="gold")],
                                      className="input-title"))
            else:
                parts.append(html.Div(html.B("Your text"), className="input-title"))
            text, pair = input_of(api, state, model_info)
            parts.append(html.P(text, className="input-text"))
            if pair:
                parts.append(html.P(pair, className="input-text pair"))
            masked = api.prediction(text, pair, state.off, state.mode)
            baseline = api.prediction(text, pair, [], "zero") if state.off else masked
        except ApiError as exc:
            return [*parts, html.P(exc.message, className="error", role="alert")]
        flipped = masked["label"] != baseline["label"]
        verdict = f"prediction flipped: {baseline['label']} → {masked['label']}" if flipped else \
            "same prediction as the baseline"
        parts.append(prediction_table(model_info["labels"], masked, baseline))
        parts.append(html.P([html.B(f"Prediction: {masked['label']}"), f" · {verdict}"],
                            className="verdict small" + (" flipped" if flipped else "")))
        return parts

    return show_input


def register(app: Dash, api: ApiClient) -> None:
    # The first page is asked for once the grid and the focused head are drawn (page-drawn), never before:
    # predicting a page is batch work that would otherwise run ahead of the grid on a large model.
    app.callback(Output("example-picker", "options"), Output("example-picker", "placeholder"),
                 Input("example-picker", "search_value"), Input("page-drawn", "data"),
                 State("grid-request", "data"), State("model-info", "data"),
                 State("example-picker", "options"),
                 prevent_initial_call=True)(picker_after_grid(make_load_examples(api)))
    app.callback(Output("input-summary", "children"), Input("grid-request", "data"),
                 State("model-info", "data"), prevent_initial_call=True)(make_show_input(api))
