"""Per request: an id (``X-Request-Id``, taken from the client when it is sane), the log
context every line of the request carries, and the latency and status metrics."""

from __future__ import annotations

import itertools
import re
import secrets
import time
from typing import Any, Callable

from labelbridge.service import logs
from labelbridge.service.auth import header
from labelbridge.service.metrics import Metrics

_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
_PREFIX = secrets.token_hex(4)     # ids unique across processes and restarts, cheap per request
_COUNTER = itertools.count(1)
REQUEST_ID = "labelbridge.request_id"


class ObserveMiddleware:
    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        given = header(scope, b"x-request-id")
        rid = given.decode() if given is not None and _SANE_ID.fullmatch(given) \
            else f"{_PREFIX}-{next(_COUNTER):x}"
        token = logs.context.set({"request_id": rid})
        scope[REQUEST_ID] = rid          # for the 500 handler, which runs outside this layer
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.context.reset(token)
            self.metrics.observe(self.metrics.route(scope["path"]), scope["method"], status,
                                 time.perf_counter() - started)
