"""A page of a split with gold labels and the unablated model's predictions (computed once per split)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from headscope.api.deps import EngineDep, GateDep
from headscope.api.errors import MODEL_CALL_RESPONSES
from headscope.api.schemas import MAX_EXAMPLES_PAGE, ExampleItem, ExamplesResponse

router = APIRouter(prefix="/api", tags=["examples"])


@router.get("/examples", response_model=ExamplesResponse, responses=MODEL_CALL_RESPONSES)
async def examples(
    engine: EngineDep,
    gate: GateDep,
    split: Annotated[str | None, Query(max_length=64, description="train, dev or test; default dev.")] = None,
    offset: Annotated[int, Query(ge=0, description="Id of the first example.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EXAMPLES_PAGE, description="Examples in the page.")] = 20,
) -> ExamplesResponse:
    engine.task.split(split)  # unknown split: 422 listing the task's splits, before queueing
    total, items = await gate.call(engine.examples, split, offset, limit)
    return ExamplesResponse(total=total, items=[ExampleItem(**item) for item in items])
