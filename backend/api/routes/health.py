"""Liveness and load: answered on the event loop without touching the model, so it stays quick
while model calls run."""

from __future__ import annotations

from fastapi import APIRouter
from headscope.api.deps import EngineDep, GateDep
from headscope.api.schemas import HealthResponse

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health(engine: EngineDep, gate: GateDep) -> HealthResponse:
    return HealthResponse(status="ok", model=engine.model.name, device=str(engine.model.device),
                          running=gate.running, waiting=gate.waiting, concurrency=gate.concurrency,
                          queue_size=gate.queue_size)
