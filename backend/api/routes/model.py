"""What is loaded: docs/api.md's model description plus what a client needs to explain and bound
its requests (each ablation mode's meaning, the limits)."""

from __future__ import annotations

from fastapi import APIRouter
from headscope.api.deps import EngineDep, GateDep, SettingsDep
from headscope.api.schemas import MAX_EXAMPLES_PAGE, MAX_TEXT_CHARS, REPRESENTATIONS_CAP, Limits, ModelResponse
from headscope.engine.interventions import ABLATION_MODES

router = APIRouter(prefix="/api", tags=["model"])


@router.get("/model", response_model=ModelResponse)
async def describe_model(engine: EngineDep, gate: GateDep, settings: SettingsDep) -> ModelResponse:
    limits = Limits(max_tokens=engine.model.max_tokens, max_text_chars=MAX_TEXT_CHARS,
                    max_body_bytes=settings.max_body_bytes, max_examples_page=MAX_EXAMPLES_PAGE,
                    max_representations=REPRESENTATIONS_CAP,
                    concurrency=gate.concurrency, queue_size=gate.queue_size)
    description = engine.describe()
    return ModelResponse(**description, ablation_modes=ABLATION_MODES, limits=limits)
