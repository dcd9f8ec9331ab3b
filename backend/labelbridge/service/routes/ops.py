"""What operators call: ``/metrics`` (Prometheus text; ``?format=json`` is ``/status``),
``/status`` (JSON), ``/ready`` (readiness, naming why not) and ``/openapi.json``; all behind
basic auth when it is set. Everything that reads the disk runs off the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

from labelbridge.service.auth import BasicAuth
from labelbridge.service.errors import respond
from labelbridge.service.metrics import CONTENT_TYPE, Metrics
from labelbridge.service.openapi import document, errors
from labelbridge.service.readiness import Readiness
from labelbridge.service.schemas import ReadyResponse
from labelbridge.settings import Settings


def register(app: FastAPI, settings: Settings, auth: BasicAuth, metrics: Metrics,
             readiness: Readiness, snapshot: Callable[[], dict[str, Any]]) -> None:
    ops = {"tags": ["operations"], "responses": errors(401)}

    async def status() -> Response:
        snap = await asyncio.to_thread(snapshot)
        return respond({"counters": metrics.counters(), **snap})

    @app.get("/metrics", tags=["operations"], response_class=Response,
             summary="Prometheus metrics (text exposition format; ?format=json: /status)",
             responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}},
                        **errors(401)})
    async def prometheus(request: Request) -> Response:
        auth.check(request.scope)
        if request.query_params.get("format") == "json":
            return await status()
        return Response(await asyncio.to_thread(metrics.render), media_type=CONTENT_TYPE)

    @app.get("/status", **ops, summary="Counters, outbox, index and worker state as JSON")
    async def status_json(request: Request) -> Response:
        auth.check(request.scope)
        return await status()

    @app.get("/ready", tags=["operations"], response_model=ReadyResponse,
             responses={503: {"model": ReadyResponse, "description": "degraded: see reasons"},
                        **errors(401)},
             summary="Readiness: 200 ready, or 503 degraded naming each reason")
    async def ready(request: Request) -> Response:
        auth.check(request.scope)
        reasons = await asyncio.to_thread(lambda: readiness.check(snapshot()))
        return respond({"status": "degraded" if reasons else "ready", "reasons": reasons},
                       503 if reasons else 200)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        auth.check(request.scope)
        return respond(document(app, settings.webhook_header))
