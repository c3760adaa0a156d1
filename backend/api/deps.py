"""What routes receive through ``Depends``: the one engine, the model gate and the settings.

All three are created once per app (the engine in the lifespan unless a test hands one in) and kept on
``app.state``; routes never build or load anything themselves, and never take a path from a request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from headscope.api.limits import ModelGate
from headscope.engine.engine import Engine
from headscope.settings import Settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_gate(request: Request) -> ModelGate:
    return request.app.state.gate


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


EngineDep = Annotated[Engine, Depends(get_engine)]
GateDep = Annotated[ModelGate, Depends(get_gate)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
