"""headscope's HTTP API (docs/api.md): a FastAPI app built by :func:`create_app`."""

from headscope.api.app import create_app, serve_api

__all__ = ["create_app", "serve_api"]
