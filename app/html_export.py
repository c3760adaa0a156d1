"""The dashboard's "standalone HTML" export: the current view as one file that opens offline.

The page is built by :func:`headscope.figures.standalone_html`, the same builder as ``hs.export_html``,
from what the API answers for the view: every head's attention (float16) and the score on all of dev,
as ``#score`` shows it (answered from the store when the page has already asked for it).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from headscope.app.api_client import ApiClient, ApiError
from headscope.figures import standalone_html

Payload = dict[str, Any]
FILENAME = "headscope-view.html"


def decode_heads(response: Payload, num_layers: int, num_heads: int) -> np.ndarray:
    """``/api/attention``'s f16 heads -> ``[layers, heads, n, n]`` float32."""
    n = len(response["tokens"])
    maps = np.zeros((num_layers, num_heads, n, n), dtype=np.float32)
    for entry in response["heads"]:
        data = np.frombuffer(base64.b64decode(entry["data"]), dtype="<f2").reshape(n, n)
        maps[entry["layer"], entry["head"]] = data
    return maps


def view_html(api: ApiClient, state: Payload, model_info: Payload, share_url: str | None = None) -> str:
    """The standalone page of a view-state (``ex`` or ``text``/``pair``, focus, ``off``, ``mode``)."""
    if state.get("ex") is not None:
        examples = api.dev_examples(model_info["fingerprint"])
        ex = int(state["ex"])
        if not 0 <= ex < len(examples):
            raise ApiError(422, f"dev example {ex} does not exist: ids are 0..{len(examples) - 1}")
        text, pair = examples[ex]["text"], examples[ex]["text_pair"]
    else:
        text, pair = str(state["text"]), state.get("pair") or None
    off = [list(h) for h in state.get("off", [])]
    mode = state.get("mode", "zero")
    response = api.attention(text, pair, off, mode, fmt="f16")
    scores = api.evaluate(off, mode)
    maps = decode_heads(response, int(model_info["num_layers"]), int(model_info["num_heads"]))
    task = model_info.get("task", {}).get("name", "")
    return standalone_html(
        title=f"headscope: {model_info['name']} on {task}", tokens=response["tokens"], maps=maps,
        focus=(int(state.get("layer", 0)), int(state.get("head", 0))), off=off, mode=mode, measure="weights",
        prediction=response["prediction"], labels=model_info["labels"], model_name=model_info["name"],
        scores=scores, link=share_url)
