"""Layer states under a mask: the first two principal components of a layer's pooled states
(docs/api.md, "Layers"). The per-layer lens and probe are the `layers` job (routes/jobs.py)."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter
from headscope.api.deps import EngineDep, GateDep
from headscope.api.errors import MODEL_CALL_RESPONSES
from headscope.api.schemas import RepresentationsRequest, RepresentationsResponse
from headscope.engine.atlas.layers import check_representations_request
from headscope.engine.atlas.layers import representations as project

router = APIRouter(prefix="/api", tags=["layers"])


@router.post("/representations", response_model=RepresentationsResponse, responses=MODEL_CALL_RESPONSES)
async def representations(request: RepresentationsRequest, engine: EngineDep, gate: GateDep) -> RepresentationsResponse:
    """Each chosen example's pooled state at `layer`, projected on the first two principal components."""
    ablate = engine.mask(request.ablate)  # the one canonical mask; an unknown head is a 422 before queueing
    check_representations_request(engine, request.layer, request.split, request.limit, request.pooling)  # 422 first
    result = await gate.call(partial(project, engine, request.layer, request.split, request.limit, ablate,
                                     request.mode, request.pooling))
    return RepresentationsResponse(**result)
