"""The app factory: settings in, a FastAPI app out, with the engine loaded once in the lifespan.

Order matters here. The routers of ``ROUTERS`` come first; the dashboard, when given, answers only
what no route matched (the router's fallback, i.e. after every route, including ones added later),
and even then never a path under ``/api``, which stays a JSON 404. A ``Mount("/")`` would instead
catch ``POST /api/model`` and hand the dashboard a request that deserves a 405.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from headscope.api.errors import install_error_handlers
from headscope.api.limits import BodySizeLimit, ModelGate
from headscope.api.routes import ROUTERS
from headscope.api.routes.jobs import create_job_manager
from headscope.engine.engine import Engine
from headscope.settings import Settings
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

API_PREFIX = "/api"


class DashboardFallback:
    """Sends what no route matched to the dashboard, except paths under /api (JSON 404 instead)."""

    def __init__(self, ui: ASGIApp, api_not_found: ASGIApp) -> None:
        self.ui = ui
        self.api_not_found = api_not_found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            await self.api_not_found(scope, receive, send)
        else:
            await self.ui(scope, receive, send)


def create_app(settings: Settings, *, engine: Engine | None = None, ui: ASGIApp | None = None) -> FastAPI:
    """The API (and the dashboard at / when `ui` is given). Without `engine`, the lifespan builds one
    from `settings` (loading the model once per process)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.engine is None:
            from headscope.engine.workspace import build_engine

            app.state.engine = await anyio.to_thread.run_sync(build_engine, settings)
            app.state.engine.scheduler = app.state.gate
        app.state.jobs = create_job_manager(app.state.engine, settings)
        yield
        app.state.jobs.close()

    app = FastAPI(
        title="headscope",
        summary="Per-head attention, head ablation and task scores of a BERT-family classifier.",
        version="1",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.gate = ModelGate(settings.queue_size)
    if engine is not None:
        engine.scheduler = app.state.gate  # the gate is the one queue for this engine's model work
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # outermost, so that even 413s and 429s carry the CORS headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials="*" not in settings.cors_origins,  # a wildcard with credentials reflects any origin
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Content-Type"],
        )
    if ui is not None:
        app.router.default = DashboardFallback(ui, app.router.not_found)
    return app


def server_config(app: ASGIApp, settings: Settings, log_level: str = "info") -> uvicorn.Config:
    """How uvicorn serves the app, shared by `serve_api`, the tests that start a real server and the
    load script."""
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level,
                          server_header=False, timeout_graceful_shutdown=5)


def serve_api(settings: Settings, ui: ASGIApp | None = None, engine: Engine | None = None) -> None:
    """Run the API (and the dashboard, if given) with uvicorn on settings.host:settings.port until stopped."""
    uvicorn.Server(server_config(create_app(settings, engine=engine, ui=ui), settings)).run()
