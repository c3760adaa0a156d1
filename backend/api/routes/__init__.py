"""The API's routers, one per area. A new area appends its router to ``ROUTERS``; the app factory
includes them in this order, all before the dashboard's catch-all."""

from __future__ import annotations

from fastapi import APIRouter
from headscope.api.routes import attention, evaluate, examples, health, jobs, layers, model, parse

ROUTERS: list[APIRouter] = [health.router, model.router, attention.router, evaluate.router, examples.router,
                             jobs.router, layers.router, parse.router]
