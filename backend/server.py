"""Serving: the API and the dashboard from one process (`headscope serve`), or the dashboard alone
against a running API (`headscope ui --api-url`).

The dashboard is a Flask-based Dash app wrapped by a2wsgi, so its callbacks run in a thread pool and
a slow one (a first full-dev evaluation) never blocks the API's event loop. Even in one process the
dashboard reaches the engine only through the HTTP API.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import uvicorn
from a2wsgi import WSGIMiddleware
from headscope.settings import Settings
from starlette.types import ASGIApp

WSGI_WORKERS = 16  # dashboard callbacks in flight at once; a slow evaluation holds one


def local_api_url(settings: Settings) -> str:
    """Where this process's own API answers: loopback when listening on every interface."""
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/api"


def checked_api_url(url: str) -> str:
    """An http(s) URL of the API, without a trailing slash; a clear error otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--api-url must be an http(s) URL like http://127.0.0.1:8000/api, got {url!r}")
    return url.rstrip("/")


def dashboard_asgi(api_url: str) -> WSGIMiddleware:
    """The dashboard as an ASGI app, talking to the API at `api_url`."""
    from headscope.app.dashboard import create_dash

    dash_app = create_dash(checked_api_url(api_url))
    return WSGIMiddleware(dash_app.server, workers=WSGI_WORKERS)


def serve(settings: Settings) -> None:
    """API at /api and dashboard at / on settings.host:settings.port, until stopped.

    The engine is built before the server starts, so a bad model or task is reported as one clear
    message (an `EngineError` for the caller) rather than a failed ASGI lifespan."""
    from headscope.api.app import serve_api
    from headscope.engine.workspace import build_engine

    engine = build_engine(settings)
    serve_api(settings, ui=dashboard_asgi(settings.api_url or local_api_url(settings)), engine=engine)


def serve_ui(settings: Settings) -> None:
    """The dashboard alone on settings.host:settings.port, against the API at settings.api_url."""
    if not settings.api_url:
        raise ValueError("the dashboard alone needs the API's address: --api-url http://HOST:PORT/api")
    uvicorn.run(dashboard_asgi(settings.api_url), host=settings.host, port=settings.port, log_level="info",
                server_header=False)


class _ThreadServer(uvicorn.Server):
    """A uvicorn server that says when its start-up (lifespan included) is over, by an event."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.start_finished = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.start_finished.set()


@contextmanager
def serve_in_thread(make_app: Callable[[str], ASGIApp], *, log_level: str = "warning",
                    start_timeout_s: float = 120.0) -> Iterator[str]:
    """Serve the app that `make_app(base_url)` returns with uvicorn in a daemon thread on a loopback port,
    and yield its base URL (``http://127.0.0.1:PORT``) once it answers; stop it on exit.

    The socket is bound before the app is built, so the port is never raced for and an app that must know
    its own address (the dashboard calls its API over HTTP) gets it. For tests, benchmarks and notebooks.
    """
    from headscope.api.app import server_config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(host="127.0.0.1", port=sock.getsockname()[1])
    server = _ThreadServer(server_config(make_app(url), settings, log_level=log_level))

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            server.start_finished.set()  # a start that failed before start-up must not leave the caller waiting

    thread = threading.Thread(target=run, name="headscope-server", daemon=True)
    thread.start()
    try:
        if not server.start_finished.wait(start_timeout_s) or not server.started:
            raise RuntimeError(f"the server at {url} did not start (see the log above)")
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
