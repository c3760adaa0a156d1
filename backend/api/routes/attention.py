"""Per-head attention and the prediction for one input under a mask.

The engine memoises whole forwards per (text, pair, mask, mode), so a client fetching one head after
another, or one measure after another, pays for the model once; `heads` and `measure` only choose
what is sent (docs/api.md, "Attention measures"). The forward runs through the
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
from headscope.api.deps import EngineDep, GateDep
from headscope.api.errors import MODEL_CALL_RESPONSES
from headscope.api.schemas import AttentionRequest, AttentionResponse
from headscope.engine.engine import AttentionResult, Engine
from headscope.engine.errors import InputError
from headscope.engine.words import Alignment, require_offsets

router = APIRouter(prefix="/api", tags=["attention"])

JSON_DECIMALS = 5  # docs/api.md promises 5 decimals


def selected_heads(engine: Engine, heads: list[tuple[int, int]] | None, measure: str) -> list[tuple[int, int]]:
    """The heads to send, in the order asked, without repeats; every head when none are named; none for
    rollout (one map per layer), where naming heads is an error."""
    if measure == "rollout":
        if heads is not None:
            raise InputError("measure rollout is per layer, not per head: leave heads out (null); the answer "
                             "carries every layer's map in `layers`")
        return []
    if heads is None:
        return [(layer, head) for layer in range(engine.model.num_layers) for head in range(engine.model.num_heads)]
    engine.mask(heads)  # raises a 422-bound InputError naming an unknown head and the ranges
    return list(dict.fromkeys(heads))


def pooled(maps: np.ndarray, size: int) -> np.ndarray:
    """Maps ``[k, n, n]`` average-pooled as torch's adaptive_avg_pool2d does to min(n, size) x min(n, size):
    a grid of 384 heads at 512 tokens then weighs about 1 MB, not 270."""
    n = maps.shape[-1]
    side = min(n, size)
    if side == n:
        return maps
    return torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(maps)), (side, side)).numpy()


def encoded_map(matrix: np.ndarray, format: str) -> dict:
    """One map: ``{"data": base64 little-endian float16}`` (f16; thumb adds its ``shape``) or ``{"values":
    rounded rows}`` (json)."""
    if format in ("f16", "thumb"):
        encoded = {"data": base64.b64encode(matrix.astype("<f2").tobytes()).decode("ascii")}
        return {**encoded, "shape": list(matrix.shape)} if format == "thumb" else encoded
    # float64 before rounding, so 0.12346 prints as such and not as float32 noise
    return {"values": np.round(matrix.astype(np.float64), JSON_DECIMALS).tolist()}


def render_attention(result: AttentionResult, request: AttentionRequest, heads: list[tuple[int, int]],
                     ablate: list[list[int]], words: Alignment | None = None) -> bytes:
    """The response body: per-head maps (weights, norm) or per-layer maps (rollout) of the measure asked,
    as rounded JSON rows, base64 of little-endian float16 (row-major n x n), or pooled thumbnails; at word
    level (`words` given) each map merged to words first (summed TO a word's pieces, averaged FROM them)."""
    measure = request.measure
    maps = result.head_maps(measure, heads) if heads else np.zeros((0, 0, 0), np.float32)
    tokens, segments, rollout = result.tokens, result.segments, result.rollout if measure == "rollout" else None
    if words is not None:
        tokens, segments = words.entries, words.entry_segments(result.segments)
        maps = words.merge(maps) if heads else np.zeros((0, 0, 0), np.float32)
        rollout = words.merge(rollout) if rollout is not None else None
    if request.format == "thumb":
        maps = pooled(maps, request.size)
    shaped = []
    for (layer, head), matrix in zip(heads, maps, strict=True):
        entry = {"layer": layer, "head": head, **encoded_map(matrix, request.format)}
        if measure == "norm" and result.silenced(layer, head):
            entry["disabled"] = True
        shaped.append(entry)
    body = {
        "tokens": tokens,
        "segments": segments,
        "prediction": {"label": result.label, "probs": result.probs},
        "heads": shaped,
        "measure": measure,
        "mode": request.mode,
        "ablate": ablate,
        "level": request.level,
    }
    if rollout is not None:
        layer_maps = pooled(rollout, request.size) if request.format == "thumb" else rollout
        body["layers"] = [{"layer": layer, **encoded_map(matrix, request.format)}
                          for layer, matrix in enumerate(layer_maps)]
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


@router.post("/attention", response_model=AttentionResponse, responses=MODEL_CALL_RESPONSES)
async def attention(request: AttentionRequest, engine: EngineDep, gate: GateDep) -> Response:
    """Every requested head's attention in the requested measure (rows = queries) and the prediction, over
    the model's tokens or (``level: word``) over spaCy's words."""
    mask = engine.mask(request.ablate)  # the one canonical mask; an unknown head is a 422 before queueing
    heads = selected_heads(engine, request.heads, request.measure)
    if request.level == "word":
        require_offsets(engine.model.tokenizer)  # 422 before queueing

    def forward() -> tuple[AttentionResult, Alignment | None]:
        result = engine.attention(request.text, request.text_pair, mask, request.mode)
        if request.level == "token":
            return result, None
        return result, engine.word_alignment(result.tokens, request.text, request.text_pair)

    result, words = await gate.call(forward)  # engine.attention queues its forward at interactive priority
    body = await anyio.to_thread.run_sync(render_attention, result, request, heads, mask.pairs(), words)
    return Response(body, media_type="application/json")
