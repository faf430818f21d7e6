"""The observe HTTP/WebSocket API (Starlette): a declarative route list over the observe core."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from common.clock import now_ns
from services.observe.core import ObserveCore


def build_app(core: ObserveCore) -> Starlette:
    async def health(request: Request) -> JSONResponse:
        doc = core.health(now_ns())
        return JSONResponse(doc, status_code=200 if doc["ok"] else 503)

    return Starlette(routes=[Route("/health", health)])
