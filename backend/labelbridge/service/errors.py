"""Every answer that is not a success is JSON: ``{"detail": ...}``.

``detail`` is a message, or a list of ``{"loc": ["body", <field path>], "msg", "type"}`` when
a field is at fault (FastAPI's shape). A bug answers 500 JSON with the request id to look up in
the log, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from labelbridge.groundtruth.outbox import OutboxUnavailable

log = logging.getLogger(__name__)
JSON = "application/json"
RETRY_AFTER_S = 10   # what a 503 asks the caller to wait when the outbox cannot store events


class ClientError(Exception):
    """An answer in the 4xx range (or 503 when the outbox cannot take the event)."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def field_error(loc: list, msg: str, status: int = 422, kind: str = "value_error") -> ClientError:
    return ClientError(status, [{"loc": ["body", *loc], "msg": msg, "type": kind}])


def respond(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ClientError)
    async def _client_error(request: Request, exc: ClientError) -> Response:
        return respond({"detail": exc.detail}, exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return respond({"detail": exc.detail}, exc.status_code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return respond({"detail": [{k: e.get(k) for k in ("loc", "msg", "type")}
                                   for e in exc.errors()]}, 422)

    @app.exception_handler(OutboxUnavailable)
    async def _outbox_unavailable(request: Request, exc: OutboxUnavailable) -> Response:
        # Never 200 for what is not on disk; the outbox's log says what happened.
        return respond({"detail": f"the outbox cannot store events now: {exc}"}, 503,
                       {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=499)   # nobody to answer (cut off for a limit, or gone)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.error("unhandled error in %s %s", request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return respond({"detail": "internal error; the server log has the details",
                        "request_id": request.scope.get("labelbridge.request_id")}, 500)
