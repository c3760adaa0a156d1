"""The dashboard's "standalone HTML" export: the current view as one file that opens offline.

The page is built by :func:`headscope.figures.standalone_html`, the same builder as ``hs.export_html``,
from what the API answers for the view, fetched as the inspector fetches it so that its size stays
bounded at any model size: the grid from every head's thumbnail (``format: "thumb"``, at most 32 x 32
each: about 1 MB for 24 x 16 heads at 512 tokens, where full maps would be about 270 MB), the focused
head's full map, and the score on all of dev, as ``#score`` shows it (answered from the store when the
page has already asked for it). The page says what it holds.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from headscope.app.api_client import ApiClient
from headscope.app.attention_callbacks import attention_answer
from headscope.app.urlstate import ViewState
from headscope.figures import standalone_html

Payload = dict[str, Any]
FILENAME = "headscope-view.html"


def decoded(entry: Payload, n: int) -> np.ndarray:
    """One map of an f16 or thumb answer (its `shape`, else n x n) as float32."""
    shape = entry.get("shape") or (n, n)
    return np.frombuffer(base64.b64decode(entry["data"]), dtype="<f2").reshape(shape).astype(np.float32)


def decode_heads(response: Payload, num_layers: int, num_heads: int) -> np.ndarray:
    """``/api/attention``'s f16 or thumb maps -> ``[layers, heads, rows, cols]`` float32 (heads not sent stay
    0); for rollout its layers -> ``[layers, rows, cols]`` (what `standalone_html` takes as its grid)."""
    n = len(response["tokens"])
    entries = response["layers"] if response.get("measure") == "rollout" else response["heads"]
    if not entries:
        return np.zeros((num_layers, num_heads, 0, 0), dtype=np.float32)
    rows, cols = entries[0].get("shape") or (n, n)
    if response.get("measure") == "rollout":
        maps = np.zeros((num_layers, rows, cols), dtype=np.float32)
        for entry in entries:
            maps[entry["layer"]] = decoded(entry, n)
        return maps
    maps = np.zeros((num_layers, num_heads, rows, cols), dtype=np.float32)
    for entry in entries:
        maps[entry["layer"], entry["head"]] = decoded(entry, n)
    return maps


def view_html(api: ApiClient, state: ViewState, model_info: Payload, share_url: str | None = None) -> str:
    """The standalone page of a view (its input, focus, mask, mode and measure): the grid from thumbnails,
    the focused head in full (rollout: the grid of every layer's map only)."""
    grid = json.loads(attention_answer(api, state, model_info, fmt="thumb", heads=None))
    focused = None
    if state.measure != "rollout":
        answer = json.loads(attention_answer(api, state, model_info, fmt="f16", heads=[[state.layer, state.head]]))
        focused = decoded(answer["heads"][0], len(answer["tokens"]))
    off = [list(h) for h in state.off]
    scores = api.evaluate(off, state.mode)
    task = model_info.get("task", {}).get("name", "")
    return standalone_html(
        title=f"headscope: {model_info['name']} on {task}", tokens=grid["tokens"],
        grid=decode_heads(grid, int(model_info["num_layers"]), int(model_info["num_heads"])), focused=focused,
        focus=(state.layer, state.head), off=off, mode=state.mode, measure=state.measure,
        prediction=grid["prediction"], labels=model_info["labels"], model_name=model_info["name"],
        scores=scores, link=share_url)
