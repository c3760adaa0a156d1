"""Mean mode's prerequisite, shown as what it is: the `means` job, with its progress, before a mean-mode score.

Mean mode replaces a disabled head's output by that head's mean output over the task's reference split
(train), computed once per model and task (a few minutes for a BERT-base on a CPU). When the URL has
`mode=mean` and heads off, :func:`follow_means` starts the `means` job (or joins the one running, or finds
it finished: `POST /api/jobs` names one job per model and task) and shows its progress under the score
until it is done; then `means-ready` turns true and the score callback asks for the score (with the means
at hand, it takes as long as any other mode's). `headscope prepare` stores the default model's means, so
there the job finds them at once.
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.development.base_component import Component
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.attention_callbacks import request_state
from headscope.app.urlstate import ViewState

Payload = dict[str, Any]
POLL_MS = 500
MEANS_JOB = {"kind": "means"}  # always over the whole reference split: the one job of this model and task


def needs_means(state: ViewState) -> bool:
    """A mean-mode score needs the means only when some head is off (nothing off: the unablated model)."""
    return state.mode == "mean" and bool(state.off)


def means_components() -> list[Component]:
    """What the score panel holds for this: whether the server has the means, the poll, the status line."""
    return [
        dcc.Store(id="means-ready", data=False),  # true once the server has the means (they never go away)
        dcc.Interval(id="means-poll", interval=POLL_MS, disabled=True),
        html.Div(id="means-status", className="status small", role="status"),
    ]


def progress_line(job: Payload, model_info: Payload) -> Component:
    """The job's state in words and as a bar."""
    share = float(job.get("progress") or 0.0)
    left = f" · about {job['eta_s']:.0f} s left" if job.get("eta_s") is not None and share > 0 else ""
    doing = "waiting for its turn" if job["state"] == "queued" else f"{100 * share:.0f} % done{left}"
    split = job["params"]["split"]
    size = model_info["task"]["splits"].get(split)
    over = f"the {size:,} {split} examples" if size else f"the {split} split"
    return html.Div([
        html.Span(f"Mean mode puts in place of a disabled head its mean output over {over}; computing those "
                  "means, once for this model and task: "),
        html.Span(doing, id="means-progress-text"),
        html.Progress(id="means-progress", value=f"{share:.3f}", max="1"),
    ])


def make_follow_means(api: ApiClient):
    def follow_means(request: str | None, _ticks: int | None, ready: bool, model_info: Payload | None) -> tuple:
        """evaluate-request (and each poll) -> #means-status, whether to keep polling, means-ready."""
        state = request_state(request, model_info)
        if ready or not needs_means(state):
            return "", True, no_update
        try:
            job = api.job(api.start_job(MEANS_JOB))
        except ApiError as exc:
            return f"The mean-mode statistics could not be computed: {exc.message}", True, no_update
        if job["state"] == "done":
            return "", True, True
        if job["state"] in ("queued", "running"):
            return progress_line(job, model_info), False, no_update
        return (f"Computing the mean-mode statistics {job['state']}: {job.get('error') or 'stopped'} "
                "(reload the page to try again)"), True, no_update

    return follow_means


def register(app: Dash, api: ApiClient) -> None:
    app.callback(
        Output("means-status", "children"), Output("means-poll", "disabled"), Output("means-ready", "data"),
        Input("evaluate-request", "data"), Input("means-poll", "n_intervals"), State("means-ready", "data"),
        State("model-info", "data"), prevent_initial_call=True,
    )(make_follow_means(api))
