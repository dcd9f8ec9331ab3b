"""SIGTERM: the server stops accepting, answers what is in flight, lets the delivery worker
finish its step (or leaves the import to be resumed by name at the next start), and exits
within LABELBRIDGE_SHUTDOWN_TIMEOUT + 1 s (issue 16, graceful shutdown)."""

from __future__ import annotations

import signal
import socket
import time

import httpx
import orjson
import pytest

from tests.helpers import annotation_body as annotation
from tests.helpers import wait_for
from tests.integration.lbservice import (PROJECT, lines_per_uuid, service,  # noqa: F401
                                         standin, u5)

SHUTDOWN_TIMEOUT = 3.0


def half_sent_webhook(port: int, body: dict) -> tuple[socket.socket, bytes]:
    """A webhook whose head and half its body are sent; the rest is returned."""
    raw = orjson.dumps(body)
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Labelbridge-Token: hook-secret\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(raw)
              + raw[:len(raw) // 2])
    return s, raw[len(raw) // 2:]


def delivered(service) -> int:
    return httpx.get(service.url + "/status").json()["outbox"]["counts"]["delivered"]


def imports_created(standin) -> int:
    return len(standin.imports(PROJECT))


@pytest.mark.parametrize("import_s, resumed", [(1.0, False), (8.0, True)],
                         ids=["the step finishes", "the import is resumed by name"])
def test_sigterm_answers_in_flight_and_exits_in_bounded_time(service, standin, import_s,
                                                             resumed):
    standin.set_import_duration(import_s)
    service.start(LABELBRIDGE_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT),
                  LABELBRIDGE_BATCH_MAX_WAIT="0.05")
    service.post(annotation(31, 310, "img-1.jpg"))
    wait_for(lambda: imports_created(standin) == 1, timeout=30)       # the import is running
    if resumed:       # the batch's items are in doubt until Labelbox says how the import ended
        assert "labelbridge_outbox_in_doubt_items 1.0" in httpx.get(
            service.url + "/metrics").text.splitlines()
    sock, rest = half_sent_webhook(service.port, annotation(32, 320, "img-2.jpg"))
    # Only a request whose head the server has read is in flight: a connection still in the
    # listen backlog is reset when the listener closes. A request on another connection is
    # answered only after the event loop's next turns, which read the first one's head.
    assert httpx.get(service.url + "/health").status_code == 200
    proc = service.proc
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):                 # no longer accepting
        httpx.get(service.url + "/health", timeout=2)
    sock.sendall(rest)
    answer = b""
    while chunk := sock.recv(65536):        # the server closes after answering
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b'"accepted":1' in answer, answer
    proc.wait(30)
    took = time.monotonic() - started
    assert took < SHUTDOWN_TIMEOUT + 1.5, f"exited after {took:.1f} s"
    if not resumed:
        assert standin.imports(PROJECT)[0]["state"] == "FINISHED"
    service.start()
    wait_for(lambda: delivered(service) == 2, timeout=60)
    assert imports_created(standin) == 2           # the first import was never sent again
    counts = lines_per_uuid(standin)
    assert all(counts[u5(f"r{a}{s}")] == 1 for a in (31, 32) for s in "abw"), counts
    if resumed:
        assert ": taken over (import labelbridge-" in service.log.read_text()
