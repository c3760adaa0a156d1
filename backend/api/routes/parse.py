"""spaCy's dependency parse of an input, each segment parsed on its own (docs/api.md: words and parses).

The words are the ones ``level: word`` of /api/attention and the ``syntax`` job use. The text is held
to /api/attention's limits (empty, or longer than max_tokens once encoded: 422), so every parse served
has a word-level attention map to go with it.
"""

from __future__ import annotations

from fastapi import APIRouter
from headscope.api.deps import EngineDep, GateDep
from headscope.api.errors import MODEL_CALL_RESPONSES
from headscope.api.schemas import ParseRequest, ParseResponse

router = APIRouter(prefix="/api", tags=["parse"])


@router.post("/parse", response_model=ParseResponse, responses=MODEL_CALL_RESPONSES)
async def parse(request: ParseRequest, engine: EngineDep, gate: GateDep) -> ParseResponse:
    """Words, their syntactic heads (indices into words; a root points at itself) and relations."""
    engine.model.encode_one(request.text, request.text_pair)  # 422 before queueing, as /api/attention
    parsed = await gate.run(engine.parse, request.text, request.text_pair)
    return ParseResponse(words=parsed.words, heads=parsed.heads, relations=parsed.relations,
                         parser=engine.parser.name)
