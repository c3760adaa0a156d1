"""The task score with some heads disabled, against the unablated baseline.

A mask already evaluated is answered from the result store without queueing behind running model
calls (``cached: true``); anything else goes through the model gate.
"""

from __future__ import annotations

import time
from functools import partial

import anyio
from fastapi import APIRouter

from backend.api.deps import EngineDep, GateDep, validated_mask
from backend.api.errors import MODEL_CALL_RESPONSES
from backend.api.limits import Priority
from backend.api.schemas import EvaluateRequest, EvaluateResponse
from backend.engine.engine import Engine, EvaluationResult

router = APIRouter(prefix="/api", tags=["evaluate"])


def stored_evaluation(engine: Engine, heads: list[list[int]], mode: str, split: str,
                      n: int) -> EvaluationResult | None:
    """The stored result of this exact evaluation, if any, looked up under the engine's own key recipe
    (the same one `Engine.evaluate` checks first), but without waiting for the model."""
    started = time.perf_counter()
    key = engine._key("evaluate", split=split, n=n, mode=mode, mask=heads)
    hit = engine.store.get(key)
    if hit is None:
        return None
    return EvaluationResult(**hit, cached=True, elapsed_ms=(time.perf_counter() - started) * 1000)


@router.post("/evaluate", response_model=EvaluateResponse, responses=MODEL_CALL_RESPONSES)
async def evaluate(request: EvaluateRequest, engine: EngineDep, gate: GateDep) -> EvaluateResponse:
    """Score, baseline, delta and the flipped example ids for one mask on the first `limit` examples."""
    heads = validated_mask(engine, request.ablate)
    split = request.split or "dev"
    n = len(engine.task.select(split, request.limit))  # unknown split or bad limit: 422 before queueing
    result = await anyio.to_thread.run_sync(stored_evaluation, engine, heads, request.mode, split, n)
    if result is None:
        result = await gate.run(partial(engine.evaluate, heads, request.mode, split, request.limit),
                                priority=Priority.BATCH)
    return EvaluateResponse(**result.to_dict(), split=split, ablate=heads)
