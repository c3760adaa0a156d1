"""Per-head attention and the prediction for one input under a mask.

The engine memoises whole forwards per (text, pair, mask, mode), so a client fetching one head after
another pays for the model once; `heads` only chooses what is sent. The forward runs through the
model gate; shaping and serialising the (possibly megabytes of) numbers runs in a worker thread too,
so the event loop keeps answering health checks meanwhile.
"""

from __future__ import annotations

import base64
import json

import anyio
import numpy as np
import torch
from fastapi import APIRouter, Response
from headscope.api.deps import EngineDep, GateDep, validated_mask
from headscope.api.errors import MODEL_CALL_RESPONSES
from headscope.api.schemas import AttentionRequest, AttentionResponse
from headscope.engine.engine import AttentionResult, Engine

router = APIRouter(prefix="/api", tags=["attention"])

JSON_DECIMALS = 5  # docs/api.md promises 5 decimals


def selected_heads(engine: Engine, heads: list[tuple[int, int]] | None) -> list[tuple[int, int]]:
    """The heads to send, in the order asked, without repeats; every head when none are named."""
    if heads is None:
        return [(layer, head) for layer in range(engine.model.num_layers) for head in range(engine.model.num_heads)]
    engine.disabled_tensor(heads)  # raises a 422-bound InputError naming an unknown head and the ranges
    return list(dict.fromkeys(heads))


def pooled(weights: np.ndarray, heads: list[tuple[int, int]], size: int) -> np.ndarray:
    """The chosen heads' maps ``[heads, n, n]`` average-pooled as torch's adaptive_avg_pool2d does to
    min(n, size) x min(n, size): a grid of 384 heads at 512 tokens then weighs about 1 MB, not 270."""
    layers, per_layer, n = weights.shape[0], weights.shape[1], weights.shape[-1]
    side = min(n, size)
    flat = weights.reshape(layers * per_layer, n, n)
    index = [layer * per_layer + head for layer, head in heads]
    chosen = torch.from_numpy(flat if index == list(range(len(flat))) else flat[index])  # all heads: no copy
    if side == n:
        return chosen.numpy()
    return torch.nn.functional.adaptive_avg_pool2d(chosen, (side, side)).numpy()


def render_attention(result: AttentionResult, request: AttentionRequest, heads: list[tuple[int, int]],
                     ablate: list[list[int]]) -> bytes:
    """The response body: rounded JSON rows, or base64 of little-endian float16 (row-major n x n), or
    pooled thumbnails in the same encoding with their shape."""
    shaped = []
    thumbs = pooled(result.weights, heads, request.size) if request.format == "thumb" else None
    for index, (layer, head) in enumerate(heads):
        matrix = result.weights[layer, head]
        if thumbs is not None:
            thumb = thumbs[index]
            encoded = base64.b64encode(thumb.astype("<f2").tobytes()).decode("ascii")
            shaped.append({"layer": layer, "head": head, "data": encoded, "shape": list(thumb.shape)})
        elif request.format == "f16":
            encoded = base64.b64encode(matrix.astype("<f2").tobytes()).decode("ascii")
            shaped.append({"layer": layer, "head": head, "data": encoded})
        else:  # float64 before rounding, so 0.12346 prints as such and not as float32 noise
            values = np.round(matrix.astype(np.float64), JSON_DECIMALS).tolist()
            shaped.append({"layer": layer, "head": head, "values": values})
    body = {
        "tokens": result.tokens,
        "segments": result.segments,
        "prediction": {"label": result.label, "probs": result.probs},
        "heads": shaped,
        "mode": request.mode,
        "ablate": ablate,
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


@router.post("/attention", response_model=AttentionResponse, responses=MODEL_CALL_RESPONSES)
async def attention(request: AttentionRequest, engine: EngineDep, gate: GateDep) -> Response:
    """Every requested head's attention (rows = queries, each summing to 1) and the prediction."""
    ablate = validated_mask(engine, request.ablate)
    heads = selected_heads(engine, request.heads)
    result = await gate.run(engine.attention, request.text, request.text_pair, ablate, request.mode)
    body = await anyio.to_thread.run_sync(render_attention, result, request, heads, ablate)
    return Response(body, media_type="application/json")
