"""Request bodies are bounded in size, per endpoint, before a route sees them.

* ``Content-Length`` over the endpoint's limit is answered 413 at once, nothing kept; a body
  without a length (chunked) is counted as it arrives and refused the moment it passes the
  limit. Either way at most one read buffer of it is ever held (uvicorn stops reading a socket
  whose data the app has not asked for). Up to ``DRAIN_BYTES`` past the limit are read (and
  dropped) first: most clients, Label Studio's included, send the whole body before they read
  the answer, and closing on unread data resets the connection, losing the 413.
* A chunked body answered before it was read to its end closes the connection.

Time (of the head and of the body), the head's size and the connection cap are bounded one
level down, in ``service.protocol``. A body within its declared length needs no wrapper here:
the HTTP parser never delivers more than that length.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from labelbridge.service.errors import ClientError
from labelbridge.settings import Settings

NO_BODY_LIMIT = 64 << 10   # endpoints that take no body (GET, /metrics, ...)
DRAIN_BYTES = 8 << 20      # read and dropped past a limit, so the client sees the 413
CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class BodyLimits:
    per_path: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (bytes, setting)
    drain_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "BodyLimits":
        limits = {"/predict": (int(settings.max_body_predict), "LABELBRIDGE_MAX_BODY_PREDICT"),
                  "/setup": (int(settings.max_body_setup), "LABELBRIDGE_MAX_BODY_SETUP"),
                  "/webhook": (int(settings.max_body_webhook), "LABELBRIDGE_MAX_BODY_WEBHOOK")}
        limits["/webhook/"] = limits["/webhook"]
        return cls(limits, settings.body_timeout)

    def of(self, path: str) -> tuple[int, str]:
        return self.per_path.get(path, (NO_BODY_LIMIT, "a fixed limit for this endpoint"))


def too_large(size: int | str, limit: int, setting: str) -> ClientError:
    return ClientError(413, [{"loc": ["body"], "msg": f"request body of {size} bytes is over "
                              f"the limit of {limit} bytes ({setting})", "type": "too_large"}],
                       CLOSE)


class BodyLimitMiddleware:
    def __init__(self, app: Any, limits: BodyLimits,
                 refused: Callable[[str], None] = lambda reason: None) -> None:
        self.app = app
        self.limits = limits
        self.refused = refused

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = chunked = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = value
        if length is None and chunked is None:          # no body
            return await self.app(scope, receive, send)
        limit, setting = self.limits.of(scope["path"])
        if length is not None and length.isdigit():
            declared = int(length)
            if declared <= limit:                       # the parser stops at the length
                return await self.app(scope, receive, send)
            self.refused("body_too_large")
            if declared - limit <= DRAIN_BYTES:
                await self._drain(receive, declared)
            return await _answer(send, too_large(declared, limit, setting))
        state = {"size": 0, "complete": False}

        async def counting_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["size"] += len(message.get("body", b""))
                state["complete"] = not message.get("more_body", False)
                if state["size"] > limit:
                    self.refused("body_too_large")
                    if not state["complete"]:
                        state["complete"] = await self._drain(receive, DRAIN_BYTES)
                    raise too_large(f"more than {limit}", limit, setting)
            return message

        async def closing_send(message: dict) -> None:
            if message["type"] == "http.response.start" and not state["complete"]:
                headers = list(message.get("headers", []))
                if (b"connection", b"close") not in headers:
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, counting_receive, closing_send)

    async def _drain(self, receive: Callable, at_most: int) -> bool:
        """Read and drop the rest of a body, up to ``at_most`` bytes; True if it ended."""
        dropped = 0
        try:
            async with asyncio.timeout(self.limits.drain_timeout_s):
                while dropped <= at_most:
                    message = await receive()
                    if message["type"] != "http.request":
                        return False
                    dropped += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return True
        except TimeoutError:
            pass
        return False


async def _answer(send: Callable, exc: ClientError) -> None:
    body = orjson.dumps({"detail": exc.detail})
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
