"""The page's state is its URL. How a URL comes to be, and what it shows at once.

- A click (a head's toggle or picture, a layer, a mode, reset, an example, a flipped example, and any
  component whose id is ``{"param": NAME}``: it sets URL parameter NAME to its value) becomes the next
  URL in the browser (`nextSearch`), without a server call.
- A URL this page did not write (the first load, a pasted link, Back/Forward) and a typed text are
  checked here, on the server (`check_search`): invalid parts fall back to their defaults with one
  explanation each; a text the model refuses keeps the previous view (typed) or falls back to example 0
  (a link), saying why once.
- `applySearch` writes the result to the address bar and the share box in one update (`deriveRequests`,
  attention_callbacks.py, marks the score busy when the mask changed). `page-search` ({search, how}) is
  what the page shows; `external-search` is a URL the page did not write, waiting for `check_search`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate
from headscope.app.api_client import ApiClient, ApiError
from headscope.app.clientside import js
from headscope.app.urlstate import ModelShape, parse_query, to_query

# Every control that turns a click into the next URL, in the browser. Add a control here only if it
# cannot be a `{"param": NAME}` component.
CONTROLS = (
    Input("grid-click", "data"),  # a head's picture (focus) or toggle, clicked
    Input({"layer-toggle": ALL}, "n_clicks"),
    Input("reset-mask", "n_clicks"),
    Input({"mode-button": ALL}, "n_clicks"),
    Input({"flipped": ALL}, "n_clicks"),
    Input("example-picker", "value"),
    Input({"param": ALL}, "value"),
    Input("dismiss-problems", "n_clicks"),
)
EMPTY_TEXT = "The text box is empty: type a sentence to analyse (or pick a dev example)."


def refused_text(api: ApiClient, text: str, pair: str | None) -> str | None:
    """Why the model cannot take this input (the API's own words, e.g. over max_tokens), or None."""
    try:
        api.prediction(text, pair, [], "zero")
    except ApiError as exc:
        if exc.is_bad_input:
            return exc.message
        raise
    return None


def make_check_search(api: ApiClient):
    def check_search(external: dict | None, _analyse: int | None, text: str | None, pair: str | None,
                     page: dict | None, model_info: dict | None) -> tuple[Any, list[str]]:
        """A link or a typed text -> the view it names (page-search) and what could not be used (problems)."""
        if not model_info:
            raise PreventUpdate
        shape = ModelShape.from_model_info(model_info)
        try:
            if ctx.triggered_id == "analyse-text":
                if not (text or "").strip():
                    return no_update, [EMPTY_TEXT]
                current, _ = parse_query(page["search"] if page else "", shape)
                typed = replace(current, ex=None, text=text, pair=pair if (pair or "").strip() else None,
                                zoom=None, lines=None)  # a new input: token positions of the old one mean nothing
                why = refused_text(api, typed.text, typed.pair)
                if why is not None:
                    return no_update, [f"Your text could not be analysed: {why}"]
                return {"search": to_query(typed), "how": "push"}, []
            if not external:
                raise PreventUpdate
            state, problems = parse_query(external["search"], shape)
            if state.text is not None and (why := refused_text(api, state.text, state.pair)) is not None:
                problems.append(f"text: {why} Showing dev example 0 instead.")
                state = replace(state, ex=0, text=None, pair=None)
        except ApiError as exc:
            return no_update, [f"The API could not check this view: {exc.message}"]
        return {"search": to_query(state), "how": "replace"}, problems

    return check_search


def show_problems(problems: list[str] | None) -> tuple[Any, bool]:
    """The banner: what could not be shown, one line each; hidden when there is nothing to say."""
    if not problems:
        return [], True
    return [html.Strong("Not everything asked for could be shown:"), html.Ul([html.Li(p) for p in problems])], False


def register(app: Dash, api: ApiClient) -> None:
    app.clientside_callback(js("nextSearch"), Output("page-search", "data", allow_duplicate=True),
                            Output("problems", "data", allow_duplicate=True), *CONTROLS,
                            State("page-search", "data"), State("problems", "data"), State("model-info", "data"),
                            prevent_initial_call=True)
    app.clientside_callback(js("routeSearch"), Output("external-search", "data"), Input("url", "search"),
                            Input("model-info", "data"), State("page-search", "data"))
    app.callback(Output("page-search", "data", allow_duplicate=True), Output("problems", "data", allow_duplicate=True),
                 Input("external-search", "data"), Input("analyse-text", "n_clicks"), State("text-input", "value"),
                 State("pair-input", "value"), State("page-search", "data"), State("model-info", "data"),
                 prevent_initial_call=True)(make_check_search(api))
    app.clientside_callback(js("applySearch"), Output("url", "search", allow_duplicate=True),
                            Output("share-url", "value"), Input("page-search", "data"), State("url", "search"),
                            prevent_initial_call=True)
    app.callback(Output("problems-text", "children"), Output("problems-banner", "hidden"),
                 Input("problems", "data"))(show_problems)
    app.clientside_callback(js("syncInputs"), Output("example-picker", "value"), Output("text-input", "value"),
                            Output("pair-input", "value"), Output("text-details", "open"),
                            Output({"param": ALL}, "value"),
                            Input("page-search", "data"), Input("example-picker", "options"), prevent_initial_call=True)
    app.clientside_callback(js("styleFocus"), Output("focus-ring", "style"), Output("head-grid", "data-focused"),
                            Input("page-search", "data"))

