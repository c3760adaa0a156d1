"""The task score with some heads disabled, against the unablated baseline.

A mask already evaluated is answered from the result store without queueing behind running model
calls (``cached: true``); anything else goes through the model gate.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from headscope.api.deps import EngineDep, GateDep
from headscope.api.errors import MODEL_CALL_RESPONSES
from headscope.api.schemas import EvaluateRequest, EvaluateResponse

router = APIRouter(prefix="/api", tags=["evaluate"])


@router.post("/evaluate", response_model=EvaluateResponse, responses=MODEL_CALL_RESPONSES)
async def evaluate(request: EvaluateRequest, engine: EngineDep, gate: GateDep) -> EvaluateResponse:
    """Score, baseline, delta and the flipped example ids for one mask on the first `limit` examples."""
    mask = engine.mask(request.ablate)  # the one canonical mask; an unknown head is a 422 before queueing
    split = engine.task.split_name(request.split)
    engine.task.select(split, request.limit)  # unknown split or bad limit: 422 before queueing
    result = await anyio.to_thread.run_sync(engine.stored_evaluation, mask, request.mode, split, request.limit)
    if result is None:
        result = await gate.call(engine.evaluate, mask, request.mode, split, request.limit)
    return EvaluateResponse(**dict(result), split=split, ablate=mask.pairs())
