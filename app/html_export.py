"""The dashboard's "standalone HTML" export: the current view as one file that opens offline.

The page is built by :func:`headscope.figures.standalone_html`, the same builder as ``hs.export_html``,
from what the API answers for the view: every head's attention (float16) and the score on all of dev,
as ``#score`` shows it (answered from the store when the page has already asked for it).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from headscope.app.api_client import ApiClient
from headscope.app.attention_callbacks import input_of
from headscope.app.urlstate import ViewState
from headscope.figures import standalone_html

Payload = dict[str, Any]
FILENAME = "headscope-view.html"


def decode_heads(response: Payload, num_layers: int, num_heads: int) -> np.ndarray:
    """``/api/attention``'s f16 heads -> ``[layers, heads, n, n]`` float32; for rollout its layers ->
    ``[layers, n, n]`` (what `standalone_html` takes)."""
    n = len(response["tokens"])
    if response.get("measure") == "rollout":
        maps = np.zeros((num_layers, n, n), dtype=np.float32)
        for entry in response["layers"]:
            maps[entry["layer"]] = np.frombuffer(base64.b64decode(entry["data"]), dtype="<f2").reshape(n, n)
        return maps
    maps = np.zeros((num_layers, num_heads, n, n), dtype=np.float32)
    for entry in response["heads"]:
        data = np.frombuffer(base64.b64decode(entry["data"]), dtype="<f2").reshape(n, n)
        maps[entry["layer"], entry["head"]] = data
    return maps


def view_html(api: ApiClient, state: ViewState, model_info: Payload, share_url: str | None = None) -> str:
    """The standalone page of a view (its input, focus, mask, mode and measure)."""
    text, pair = input_of(api, state, model_info)
    off = [list(h) for h in state.off]
    response = api.attention(text, pair, off, state.mode, fmt="f16", measure=state.measure)
    scores = api.evaluate(off, state.mode)
    maps = decode_heads(response, int(model_info["num_layers"]), int(model_info["num_heads"]))
    task = model_info.get("task", {}).get("name", "")
    return standalone_html(
        title=f"headscope: {model_info['name']} on {task}", tokens=response["tokens"], maps=maps,
        focus=(state.layer, state.head), off=off, mode=state.mode, measure=state.measure,
        prediction=response["prediction"], labels=model_info["labels"], model_name=model_info["name"],
        scores=scores, link=share_url)
