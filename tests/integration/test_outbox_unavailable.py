"""Nothing acknowledged that is not on disk: when the outbox file is deleted or replaced under a
running server, or its disk is full, ``/webhook`` answers 503 (JSON, ``Retry-After``) instead of
200, ``/health`` says why, and a full disk recovers without a restart once space is free."""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from labelbridge.groundtruth.outbox import Outbox
from labelbridge.groundtruth.outbox import sqlite as sqlite_driver
from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import annotation_body
from tests.procs import free_port, start_process, stop_process

TOKEN = "hook-secret"
HEADERS = {"X-Labelbridge-Token": TOKEN}


def event(n: int, padding: int = 0) -> dict:
    body = annotation_body(n, 1000 + n, f"img-{n}.jpg")
    if padding:   # a large task (Label Studio sends the whole task with every annotation)
        body["task"]["data"]["notes"] = "x" * padding
    return body


class Server:
    """``labelbridge serve`` (file sink), optionally inside a private mount namespace whose data
    dir is a small tmpfs (``unshare -rm`` works unprivileged where user namespaces are on)."""

    def __init__(self, tmp: Path, tmpfs_bytes: int | None = None) -> None:
        self.data = tmp / "var"
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "LABELBRIDGE_DATA_DIR": str(self.data),
                    "LABELBRIDGE_PORT": str(self.port), "LABELBRIDGE_WEBHOOK_TOKEN": TOKEN,
                    "LABELBRIDGE_BATCH_MAX_WAIT": "0.1"}
        command = [sys.executable, "-m", "labelbridge", "serve"]
        if tmpfs_bytes is not None:
            command = ["unshare", "-rm", "sh", "-c",
                       f'mount -t tmpfs -o size={tmpfs_bytes} tmpfs "$0" && exec "$@"',
                       str(self.data), *command]
        self.command = command
        self.log = tmp / "server.log"
        self.proc = None

    def start(self) -> Server:
        self.proc = start_process(self.command, self.env, self.url + "/health", self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def path(self, name: str) -> Path:
        """A file of the data dir as the server sees it (inside its mount namespace; not for
        SQLite, which resolves the link in the caller's namespace)."""
        return Path(f"/proc/{self.proc.pid}/root") / self.data.relative_to("/") / name

    def post(self, body: dict) -> httpx.Response:
        return httpx.post(self.url + "/webhook", json=body, headers=HEADERS, timeout=30)

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()


def assert_503(r: httpx.Response, why: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["retry-after"]) > 0
    assert why in r.json()["detail"]


def test_a_deleted_outbox_file_gets_503_instead_of_acks(tmp_path):
    server = Server(tmp_path).start()
    try:
        assert [server.post(event(n)).status_code for n in (1, 2)] == [200, 200]
        os.remove(server.data / "outbox.sqlite3")
        answers = [server.post(event(n)) for n in range(3, 8)]
        for r in answers:
            assert_503(r, "deleted")
        assert "deleted" in server.health()["outbox"]["error"]
        assert "was deleted" in server.log.read_text()
        assert not (server.data / "outbox.sqlite3").exists()   # no reader made a new one
    finally:
        server.stop()
    server = Server(tmp_path).start()                    # a restart opens a new outbox
    try:
        assert server.post(event(9)).status_code == 200
        assert server.health()["outbox"] == {"ok": True, "error": None}
    finally:
        server.stop()


def fill(path: Path) -> None:
    chunk = b"\0" * (1 << 16)
    try:
        with open(path, "wb") as fh:
            while True:
                fh.write(chunk)
                fh.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc


def test_a_full_disk_gets_503_json_and_recovers_without_a_restart(tmp_path):
    server = Server(tmp_path, tmpfs_bytes=16 << 20).start()
    try:
        acked = [n for n in (1, 2, 3) if server.post(event(n)).status_code == 200]
        assert acked == [1, 2, 3]
        fill(server.path("filler"))
        refused = None
        for n in range(10, 60):                 # until the outbox needs space it cannot get
            r = server.post(event(n, padding=256 << 10))
            if r.status_code == 200:
                acked.append(n)
                continue
            refused = r
            break
        assert refused is not None, "the outbox never needed more space"
        assert_503(refused, "full")
        assert "full" in server.health()["outbox"]["error"]
        server.path("filler").unlink(missing_ok=True)
        deadline = time.monotonic() + 15
        while (r := server.post(event(99))).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        acked.append(99)
        assert server.health()["outbox"] == {"ok": True, "error": None}
        # every ack is on disk (asked of the server: SQLite resolves /proc/<pid>/root links
        # in our own mount namespace, so only the server sees its tmpfs)
        metrics = httpx.get(server.url + "/status", timeout=10).json()
        assert metrics["outbox"]["events_total"] == len(acked)
        assert "full" in server.log.read_text()
    finally:
        server.stop()


def test_a_full_disk_at_the_driver_seam_gets_503_then_recovers(tmp_path, monkeypatch):
    """The same through an injected SQLITE_FULL, where no tmpfs can be mounted."""
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path / "var", LABELBRIDGE_WEBHOOK_TOKEN=TOKEN,
                        LABELBRIDGE_DELIVERY_WORKER="off")
    many = sqlite_driver._Tx.many
    full = {"on": False}

    def many_or_full(self, query, rows):
        if full["on"]:
            raise sqlite_driver.sqlite3.OperationalError("database or disk is full")
        return many(self, query, rows)

    monkeypatch.setattr(sqlite_driver._Tx, "many", many_or_full)
    with TestClient(create_app(settings)) as client:
        assert client.post("/webhook", json=event(1), headers=HEADERS).status_code == 200
        full["on"] = True
        assert_503(client.post("/webhook", json=event(2), headers=HEADERS), "full")
        assert "full" in client.get("/health").json()["outbox"]["error"]
        full["on"] = False
        assert client.post("/webhook", json=event(3), headers=HEADERS).status_code == 200
        assert client.get("/health").json()["outbox"] == {"ok": True, "error": None}
    with Outbox(settings.outbox_db) as ob:
        assert ob.status()["events_total"] == 2
