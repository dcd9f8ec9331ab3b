"""A real server (``labelbridge serve``) against slow, many and huge clients: slow heads and
bodies are cut off, connections are capped, a huge body is refused without growing the
server's memory, and the protocol's own refusals are JSON (issue 16, defect 3)."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import httpx
import orjson
import pytest

from tests.helpers import capture, wait_for
from tests.procs import free_port, start_process, stop_process

HEAD_TIMEOUT, BODY_TIMEOUT, MAX_CONNECTIONS = 1.0, 1.5, 520
HOOK = {"X-Labelbridge-Token": "hook-secret"}
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    port = free_port()
    env = {**os.environ, "LABELBRIDGE_DATA_DIR": str(tmp / "var"), "LABELBRIDGE_PORT": str(port),
           "LABELBRIDGE_WEBHOOK_TOKEN": "hook-secret", "LABELBRIDGE_DELIVERY_WORKER": "off",
           "LABELBRIDGE_HEADER_TIMEOUT": str(HEAD_TIMEOUT),
           "LABELBRIDGE_BODY_TIMEOUT": str(BODY_TIMEOUT),
           "LABELBRIDGE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
           "LABELBRIDGE_MAX_HEADER_SIZE": "8KiB", "LABELBRIDGE_MAX_BODY_WEBHOOK": "1MiB"}
    url = f"http://127.0.0.1:{port}"
    proc = start_process([sys.executable, "-m", "labelbridge", "serve"], env, url + "/health",
                         tmp / "server.log")
    yield proc, port, url
    stop_process(proc)


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(10)
    return s


def read_all(s: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def answer(raw: bytes) -> tuple[int, dict, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, orjson.loads(body)


def trickle(s: socket.socket, data: bytes, every: float = 0.2) -> float:
    """Send a byte every ``every`` s until the server closes; seconds until it did."""
    started = time.monotonic()
    for b in data:
        try:
            s.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(every)
    return time.monotonic() - started


def rss_kb(pid: int, field: str = "VmHWM") -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def test_a_head_sent_a_byte_at_a_time_is_cut_off_with_408(server):
    _, port, _ = server
    s = connect(port)
    threading.Thread(target=trickle, args=(s, b"POST /webhook HTTP/1.1\r\nHost: x\r\n" * 10),
                     daemon=True).start()
    started = time.monotonic()
    status, headers, body = answer(read_all(s))
    took = time.monotonic() - started
    assert status == 408 and "LABELBRIDGE_HEADER_TIMEOUT" in body["detail"]
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert took < HEAD_TIMEOUT + 1.0, took


def test_a_connection_that_sends_nothing_is_closed(server):
    _, port, _ = server
    s = connect(port)
    started = time.monotonic()
    status, _, _ = answer(read_all(s))
    assert status == 408 and time.monotonic() - started < HEAD_TIMEOUT + 1.0


def test_a_body_sent_a_byte_at_a_time_is_cut_off_with_408(server):
    _, port, _ = server
    s = connect(port)
    s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Labelbridge-Token: hook-secret\r\n"
              b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    threading.Thread(target=trickle, args=(s, b"{" + b" " * 999), daemon=True).start()
    started = time.monotonic()
    status, headers, body = answer(read_all(s))
    assert status == 408 and "LABELBRIDGE_BODY_TIMEOUT" in body["detail"]
    assert headers["connection"] == "close"
    assert time.monotonic() - started < BODY_TIMEOUT + 1.0


def test_hundreds_of_slow_clients_are_all_cut_off_and_others_are_served(server):
    _, port, url = server
    clients = []
    for _ in range(500):
        s = connect(port)
        s.sendall(b"POST /webhook HTTP/1.1\r\nHo")
        clients.append(s)
    r = httpx.get(url + "/health", timeout=5)     # served meanwhile
    assert r.status_code == 200
    started = time.monotonic()
    for s in clients:
        assert answer(read_all(s))[0] == 408
    assert time.monotonic() - started < HEAD_TIMEOUT + 2.0


def test_connections_over_the_cap_get_503_json_at_once(server):
    _, port, url = server
    held = [connect(port) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.2)
    extra = connect(port)
    status, headers, body = answer(read_all(extra))
    assert status == 503 and headers["retry-after"] == "1"
    assert "LABELBRIDGE_MAX_CONNECTIONS" in body["detail"]
    for s in held:
        s.close()
    wait_for(lambda: httpx.get(url + "/health", timeout=5).status_code == 200, timeout=10)


def test_headers_over_the_limit_are_431_json(server):
    _, port, _ = server
    s = connect(port)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    status, _, body = answer(read_all(s))
    assert status == 431 and "LABELBRIDGE_MAX_HEADER_SIZE" in body["detail"]


def test_a_request_that_is_not_http_is_400_json(server):
    _, port, _ = server
    s = connect(port)
    s.sendall(b"\x16\x03\x01 hello\r\n\r\n")
    status, headers, body = answer(read_all(s))
    assert status == 400 and headers["content-type"] == "application/json" and body["detail"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_huge_body_gets_413_without_growing_the_server(server, chunked):
    proc, port, url = server
    size = 200 << 20
    before = rss_kb(proc.pid)
    s = connect(port)
    head = b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Labelbridge-Token: hook-secret\r\n" \
           b"Content-Type: application/json\r\n"
    head += (b"Transfer-Encoding: chunked\r\n\r\n" if chunked
             else b"Content-Length: %d\r\n\r\n" % size)
    s.sendall(head)
    chunk = b'{"action": "ANNOTATION_CREATED", "pad": "' + b"x" * (1 << 20)
    sent = 0
    try:
        while sent < size:
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, headers, body = answer(read_all(s))
    assert status == 413 and "LABELBRIDGE_MAX_BODY_WEBHOOK" in body["detail"][0]["msg"]
    assert sent < size, "the server read the whole body"
    grown_mb = (rss_kb(proc.pid) - before) / 1024
    assert grown_mb < 16, f"peak RSS grew by {grown_mb:.0f} MB"
    assert httpx.post(url + "/webhook", json=CREATED, headers=HOOK).status_code == 200


def test_every_cut_off_is_counted(server):
    _, _, url = server
    text = httpx.get(url + "/metrics").text
    for reason in ("head_timeout", "body_timeout", "connection_cap", "head_too_large",
                   "body_too_large"):
        line = next(x for x in text.splitlines()
                    if x.startswith(f'labelbridge_http_refused_total{{reason="{reason}"}}'))
        assert float(line.split()[-1]) >= 1, line
