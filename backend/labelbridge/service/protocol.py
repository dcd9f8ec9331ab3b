"""uvicorn's httptools protocol with the bounds uvicorn has no option for.

* Head timeout: a request's line and headers must arrive within ``head_timeout_s`` of the
  connection (or of a kept-alive connection's next bytes), else 408 and the connection closes.
  uvicorn's ``timeout_keep_alive`` covers only the idle time between requests, so without this
  a client sending a header a byte at a time holds a connection forever.
* Body timeout: the rest of a body must arrive within ``body_timeout_s`` of its head, else 408
  (or, once an answer is on its way, the connection simply closes).
* Head size: more than ``max_bytes`` of request line and headers is 431 (httptools has no limit).
* Connection cap: a connection beyond ``max_connections`` is answered 503 with ``Retry-After``
  and closed as soon as it is made. (uvicorn's ``limit_concurrency`` answers in plain text,
  and only once a head has arrived: a slow client would never get that far.)
* Every answer the protocol gives itself, including httptools' "invalid HTTP request", is JSON.

Timers are armed only when a read ends inside a head or a body: a request that arrives in one
piece, the usual case, costs none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from labelbridge.settings import Settings


@dataclass(frozen=True)
class ConnectionLimits:
    head_timeout_s: float = 10.0
    max_bytes: int = 64 << 10
    max_connections: int = 512
    body_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "ConnectionLimits":
        return cls(settings.header_timeout, int(settings.max_header_size),
                   settings.max_connections, settings.body_timeout)


def bounded_protocol(limits: ConnectionLimits,
                     refused: Callable[[str], None] = lambda reason: None) -> type:
    """An ``HttpToolsProtocol`` subclass enforcing ``limits`` (pass it as uvicorn's ``http``);
    ``refused(reason)`` is called for every connection it cuts off."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: Any = None
            self._body_timer: Any = None
            self._head_bytes = 0
            self._in_head = self._in_message = self._refused = False

        # -- connection
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                refused("connection_cap")
                self._refuse(503, f"more than {limits.max_connections} connections "
                             "(LABELBRIDGE_MAX_CONNECTIONS); try again shortly",
                             [(b"retry-after", b"1")])
                return
            self._head_timer = self.loop.call_later(limits.head_timeout_s, self._head_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            if self._refused or self.transport.is_closing():
                return
            if self._in_head:
                if self._head_timer is None:
                    self._head_timer = self.loop.call_later(limits.head_timeout_s,
                                                            self._head_timeout)
            elif self._in_message and self._body_timer is None:
                self._body_timer = self.loop.call_later(limits.body_timeout_s, self._body_timeout)

        # -- parser callbacks
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._in_head = self._in_message = True
            if self._body_timer is not None:          # the previous body is over
                self._body_timer.cancel()
                self._body_timer = None

        def on_url(self, url: bytes) -> None:
            if self._count(len(url)):
                super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if self._count(len(name) + len(value) + 4):
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if not self._refused:
                self._in_head = False
                if self._head_timer is not None:
                    self._head_timer.cancel()
                    self._head_timer = None
                super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            self._in_message = False
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None
            if not self._refused:
                super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            self._refuse(400, msg)

        # -- limits
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

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False   # a pipelined head is late: close after this one
                return
            refused("head_timeout")
            self._refuse(408, f"the request head did not arrive within {limits.head_timeout_s:g} s "
                         "(LABELBRIDGE_HEADER_TIMEOUT)")

        def _body_timeout(self) -> None:
            self._body_timer = None
            if self.transport.is_closing() or not self._in_message:
                return
            refused("body_timeout")
            if self.cycle is not None and self.cycle.response_started:
                self.transport.close()          # answered already; the rest is not wanted
            else:
                self._refuse(408, f"the request body did not arrive within "
                             f"{limits.body_timeout_s:g} s (LABELBRIDGE_BODY_TIMEOUT)")

        def _cancel(self) -> None:
            for timer in (self._head_timer, self._body_timer):
                if timer is not None:
                    timer.cancel()
            self._head_timer = self._body_timer = None

        def _refuse(self, status: int, msg: str, extra: list | None = None) -> None:
            self._refused = True
            self._cancel()
            if self.transport.is_closing():
                return
            body = orjson.dumps({"detail": msg})
            head = [STATUS_LINE[status], b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body), b"connection: close\r\n"]
            head += [name + b": " + value + b"\r\n" for name, value in extra or []]
            self.transport.write(b"".join(head) + b"\r\n" + body)
            self.transport.close()

    return BoundedHttpToolsProtocol
