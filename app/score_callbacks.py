"""The task score for the URL's mask and mode on all of dev, and the examples it flipped, rendered here.

`/api/evaluate` can take tens of seconds for a new mask on a CPU: it runs in this server callback (a
worker thread) while `#score` shows `aria-busy="true"` (set in the browser in the same update as the
address bar). It starts once the mask's grid and focused head are drawn (`score-request`, set by
`afterDrawing` in static/headscope.js), so this batch work never delays the grid. A mask scored before
answers from the API's result store at once.

The panel is a list of lines (`SCORE_LINES`): a new line (a significance test, say) is one function
added there, taking the API's answer and returning a component.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dash import Dash, Input, Output, State, html
from dash.development.base_component import Component
from dash.exceptions import PreventUpdate
from headscope.app import formatting
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.attention_callbacks import request_state
from headscope.app.means_callbacks import needs_means

Payload = dict[str, Any]
MAX_FLIPPED_SHOWN = 60  # each is a component; the JSON export has them all


def what_was_scored(result: Payload) -> Component:
    off = len(result["ablate"])
    return html.Div(f"{result['metric']} on all {result['n']} dev examples · mode {result['mode']} · "
                    f"{formatting.plural(off, 'head')} off", className="muted small")


def where_it_came_from(result: Payload) -> Component:
    source = "from the result store" if result["cached"] else f"computed in {result['elapsed_ms'] / 1000:.1f} s"
    return html.Div(f"{formatting.plural(len(result['flipped']), 'prediction')} flipped · {source}",
                    className="muted small")


def how_sure(result: Payload) -> Component:
    """The difference's 95 % interval and p-value (docs/api.md), then in words what the p-value means."""
    sure = result.get("significance")
    if not sure:
        return html.Div()
    low, high = sure["ci95"]
    p_value = sure["p_value"]
    if p_value >= 0.05:
        words = (f": no detectable change (a difference this size often arises by chance on {result['n']} "
                 "examples)")
    else:
        words = (f": a real {'drop' if result['delta'] < 0 else 'gain'}, unlikely to be chance "
                 f"({sure['right_to_wrong']} examples went right → wrong, {sure['wrong_to_right']} wrong → right)")
    return html.Div([
        html.Span("95 % interval of the difference: ", className="muted"),
        html.Span(f"[{formatting.fixed3(low)}, {formatting.fixed3(high)}]", id="delta-ci",
                  title="paired bootstrap over the dev examples (1,000 resamples)"),
        html.Span(" · ", className="muted"),
        html.Span(formatting.p_value(p_value), id="p-value",
                  title="McNemar's exact test for accuracy, a paired permutation test for F1 and MCC "
                        "(unadjusted: one mask, one test)"),
        html.Span(words, id="p-words"),
    ], className="significance-row small")


SCORE_LINES: list[Callable[[Payload], Component]] = [how_sure, what_was_scored, where_it_came_from]


def flipped_items(result: Payload, examples: dict[int, Payload], labels: list[str]) -> list[Component]:
    """One button per flipped dev example (click: inspect it with the same mask), the first ones only."""
    if not result["flipped"]:
        return [html.P("No dev prediction changed." if result["ablate"]
                       else "Disable heads to see which predictions change.", className="muted small")]
    binary = len(labels) == 2
    items: list[Component] = []
    for example_id in result["flipped"][:MAX_FLIPPED_SHOWN]:
        example = examples.get(example_id)
        verdict = ""
        if example is not None:  # with two labels a flip is a fix exactly when the unablated model was wrong
            verdict = (("now wrong" if example["predicted"] == example["label"] else "now right") if binary
                       else f"was {example['predicted']}")
        title = (f"{example['text']}\n\ngold {example['label']}; the unablated model said {example['predicted']}. "
                 if example else "") + "Click to inspect it with the same mask."
        items.append(html.Button([
            html.B(f"#{example_id}"),
            html.Span(f" {verdict}", className="fixed" if verdict == "now right" else "broken") if verdict else "",
            " · " + (example["text"] if example else ""),
        ], id={"flipped": example_id}, n_clicks=0, className="flipped-item", title=title))
    if len(result["flipped"]) > MAX_FLIPPED_SHOWN:
        items.append(html.P(f"…and {len(result['flipped']) - MAX_FLIPPED_SHOWN} more (export JSON for all).",
                            className="muted small"))
    return items


def make_show_score(api: ApiClient):
    def show_score(request: str | None, means_ready: bool, model_info: Payload | None) -> tuple:
        """score-request -> #score, #baseline-score, the difference, the lines under them, the flipped list.
        A mean-mode score waits (busy) until the server has the means (means_callbacks shows their job)."""
        state = request_state(request, model_info)
        if needs_means(state) and not means_ready:
            raise PreventUpdate
        try:
            result = api.evaluate(state.off, state.mode)
            examples = {i: api.dev_example(model_info["fingerprint"], i) for i in result["flipped"][:MAX_FLIPPED_SHOWN]}
        except ApiError as exc:
            return ("—", "false", "—", "false", "—", "score-value", [],
                    f"The score could not be computed: {exc.message}", [])
        delta_class = f"score-value {formatting.direction(result['delta'])}".strip()
        return (formatting.score(result["score"]), "false", formatting.score(result["baseline"]), "false",
                formatting.delta(result["delta"]), delta_class, [line(result) for line in SCORE_LINES], "",
                flipped_items(result, examples, model_info["labels"]))

    return show_score


def register(app: Dash, api: ApiClient) -> None:
    app.callback(
        Output("score", "children", allow_duplicate=True), Output("score", "aria-busy", allow_duplicate=True),
        Output("baseline-score", "children"), Output("baseline-score", "aria-busy"),
        Output("score-delta", "children"), Output("score-delta", "className"),
        Output("score-details", "children"), Output("score-status", "children", allow_duplicate=True),
        Output("flipped-list", "children"),
        # score-request, not evaluate-request: the same mask, set once its grid and focused head are drawn
        # (attention_callbacks), so the evaluation (batch work on all of dev) never delays the grid
        Input("score-request", "data"), Input("means-ready", "data"), State("model-info", "data"),
        prevent_initial_call=True,
    )(make_show_score(api))
