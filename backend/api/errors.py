"""Every failure becomes a JSON answer that says what was wrong and what is allowed.

Domain errors of the engine (an unknown head, split or mode, a text over ``max_tokens``) are 422s
with the engine's own message; request-validation errors are 422s that name each bad field, its
limit and the value given; unknown ``/api`` paths are 404 JSON; an overloaded gate is a 429 with
``Retry-After``. A fault of the server itself is logged with its traceback under an id, and the
client sees only that id: no traceback or internal path ever leaves the process.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from headscope.api.limits import Overloaded
from headscope.api.schemas import ErrorBody, FieldError
from headscope.engine.errors import EngineError
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

MAX_ERRORS_IN_DETAIL = 5
MAX_SHOWN_INPUT_CHARS = 40

# Documented on every route that can answer them, so the OpenAPI schema lists the real error bodies.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "Request body over max_body_bytes."},
    422: {"model": ErrorBody, "description": "Invalid input: the message names the field, limit and value."},
}
MODEL_CALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    429: {"model": ErrorBody, "description": "Too many model calls waiting; see Retry-After."},
}


def error_response(status: int, detail: str, errors: list[FieldError] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(detail=detail, errors=errors).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def _shown(value: object) -> str:
    if isinstance(value, str) and len(value) > MAX_SHOWN_INPUT_CHARS:
        return f"a string of {len(value)} characters"
    if isinstance(value, list | tuple | dict) and len(value) > 8:
        return f"{type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_INPUT_CHARS else text[:MAX_SHOWN_INPUT_CHARS] + "..."


def describe_validation_errors(errors: Sequence[dict[str, Any]]) -> list[FieldError]:
    """Pydantic's error records -> one readable line per bad field, naming the limit and the value."""
    described = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ())) or "request"
        kind = error.get("type", "")
        if kind == "json_invalid":
            problem = error.get("ctx", {}).get("error", "malformed")
            message = f"the body is not valid JSON ({problem}); send a JSON object"
            location = "body"
        elif kind == "missing" and location == "body":
            message = "the request body is missing; send a JSON object (Content-Type: application/json)"
        elif kind == "missing":
            message = "this field is required"
        elif kind == "extra_forbidden":
            message = "unknown field; see /openapi.json for the fields this endpoint takes"
        else:
            message = f"{error.get('msg', 'invalid value')}, got {_shown(error.get('input'))}"
        described.append(FieldError(field=location, message=message))
    return described


async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = describe_validation_errors(exc.errors())
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:MAX_ERRORS_IN_DETAIL])
    if len(errors) > MAX_ERRORS_IN_DETAIL:
        summary += f"; and {len(errors) - MAX_ERRORS_IN_DETAIL} more"
    return error_response(422, f"invalid request: {summary}", errors)


async def _on_engine_error(_: Request, exc: EngineError) -> JSONResponse:
    return error_response(422, str(exc))


async def _on_overloaded(_: Request, exc: Overloaded) -> JSONResponse:
    return error_response(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)})


async def _on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    path = request.url.path
    if exc.status_code == 404:
        detail = f"no such endpoint: {path}; the API's endpoints are listed at /openapi.json"
    elif exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI's 400 for a body that is not text at all; it is as malformed as broken JSON (a 422)
        return error_response(422, f"the body is not UTF-8 text ({exc.__cause__.reason} at byte "
                                   f"{exc.__cause__.start}); send a JSON object encoded as UTF-8")
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"method {request.method} is not allowed on {path}; allowed: {allowed}"
    else:
        detail = str(exc.detail)
    return error_response(exc.status_code, detail, headers=exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:12]
    log.error("unexpected error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error {incident}; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(EngineError, _on_engine_error)
    app.add_exception_handler(Overloaded, _on_overloaded)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)

