"""A page of a split (optionally of the examples matching a search) with gold labels and the unablated model's
predictions (only the page is predicted)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from headscope.api.deps import EngineDep, GateDep
from headscope.api.errors import MODEL_CALL_RESPONSES
from headscope.api.schemas import MAX_EXAMPLES_PAGE, MAX_EXAMPLES_QUERY, ExampleItem, ExamplesResponse

router = APIRouter(prefix="/api", tags=["examples"])


@router.get("/examples", response_model=ExamplesResponse, responses=MODEL_CALL_RESPONSES)
async def examples(
    engine: EngineDep,
    gate: GateDep,
    split: Annotated[str | None, Query(max_length=64, description="train, dev or test; default dev.")] = None,
    offset: Annotated[int, Query(ge=0, description="Position of the first example in the split (its id), or "
                                                   "among the matches of q.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EXAMPLES_PAGE, description="Examples in the page.")] = 20,
    q: Annotated[str | None, Query(max_length=MAX_EXAMPLES_QUERY,
                                   description="Only the examples whose text or second segment contains this, "
                                               "ignoring case; offset and total count those.")] = None,
) -> ExamplesResponse:
    engine.task.split(split)  # unknown split: 422 listing the task's splits, before queueing
    total, items = await gate.call(engine.examples, split, offset, limit, q)
    return ExamplesResponse(total=total, items=[ExampleItem(**item) for item in items])
