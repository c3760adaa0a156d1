"""spaCy's dependency parse of an input, each segment parsed on its own (docs/api.md: words and parses).

The words are the ones ``level: word`` of /api/attention and the ``syntax`` job use. The text is held
to /api/attention's limits (empty, or longer than max_tokens once encoded: 422), so every parse served
has a word-level attention map to go with it. Parsing is spaCy's work, not the model's: it runs in a worker
thread (the parser's own lock keeps spaCy to one call at a time), never in the model gate, so a parse
neither waits behind a sweep's chunks nor holds up a forward pass, and a full model queue does not refuse it.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from headscope.api.deps import EngineDep
from headscope.api.errors import ERROR_RESPONSES
from headscope.api.schemas import ParseRequest, ParseResponse

router = APIRouter(prefix="/api", tags=["parse"])


@router.post("/parse", response_model=ParseResponse, responses=ERROR_RESPONSES)
async def parse(request: ParseRequest, engine: EngineDep) -> ParseResponse:
    """Words, their syntactic heads (indices into words; a root points at itself) and relations."""
    parsed = await anyio.to_thread.run_sync(engine.parse, request.text, request.text_pair)  # 422 as /api/attention
    return ParseResponse(words=parsed.words, heads=parsed.heads, relations=parsed.relations,
                         parser=engine.parser.name)
