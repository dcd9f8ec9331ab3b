"""uvicorn's httptools protocol with the bounds uvicorn has no option for.

* Head timeout: a request's line and headers must arrive within ``timeout_s`` of the
  connection (or of the request's first byte on a kept-alive connection), else 408 and the
  connection is closed. uvicorn's ``timeout_keep_alive`` covers only the idle time between
  requests, so without this a client sending a header a byte at a time holds a connection
  forever.
* Head size: more than ``max_bytes`` of request line and headers is 431 (httptools has no limit).
* Connection cap: a connection beyond ``max_connections`` is answered 503 with ``Retry-After``
  and closed as soon as it is made. (uvicorn's ``limit_concurrency`` answers in plain text,
  and only once a head has arrived: a slow client would never get that far.)
* Every answer the protocol gives itself, including httptools' "invalid HTTP request", is JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from labelbridge.settings import Settings


@dataclass(frozen=True)
class HeadLimits:
    timeout_s: float = 10.0
    max_bytes: int = 64 << 10
    max_connections: int = 512

    @classmethod
    def from_settings(cls, settings: Settings) -> "HeadLimits":
        return cls(settings.header_timeout, int(settings.max_header_size),
                   settings.max_connections)


def bounded_protocol(limits: HeadLimits,
                     refused: Callable[[str], None] = lambda reason: None) -> type:
    """An ``HttpToolsProtocol`` subclass enforcing ``limits`` (pass it as uvicorn's ``http``);
    ``refused(reason)`` is called for every connection it cuts off."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: Any = None
            self._head_bytes = 0
            self._refused = False

        # -- connection
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                refused("connection_cap")
                self._refuse(503, f"more than {limits.max_connections} connections "
                             "(LABELBRIDGE_MAX_CONNECTIONS); try again shortly",
                             [(b"retry-after", b"1")])
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        # -- the head of a request
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._arm()

        def on_url(self, url: bytes) -> None:
            if self._count(len(url)):
                super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if self._count(len(name) + len(value) + 4):
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if not self._refused:
                self._disarm()
                super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._refused:
                super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            self._refuse(400, msg)

        # -- helpers
        def _count(self, n: int) -> bool:
            if self._refused:
                return False
            self._head_bytes += n
            if self._head_bytes > limits.max_bytes:
                refused("head_too_large")
                self._refuse(431, f"request line and headers over {limits.max_bytes} bytes "
                             "(LABELBRIDGE_MAX_HEADER_SIZE)")
                return False
            return True

        def _arm(self) -> None:
            if self._head_timer is None and not self._refused:
                self._head_timer = self.loop.call_later(limits.timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False   # a pipelined head is late: close after this one
                return
            refused("head_timeout")
            self._refuse(408, f"the request head did not arrive within {limits.timeout_s:g} s "
                         "(LABELBRIDGE_HEADER_TIMEOUT)")

        def _refuse(self, status: int, msg: str, extra: list | None = None) -> None:
            self._refused = True
            self._disarm()
            if self.transport.is_closing():
                return
            body = orjson.dumps({"detail": msg})
            head = [STATUS_LINE[status], b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body), b"connection: close\r\n"]
            head += [name + b": " + value + b"\r\n" for name, value in extra or []]
            self.transport.write(b"".join(head) + b"\r\n" + body)
            self.transport.close()

    return BoundedHttpToolsProtocol
