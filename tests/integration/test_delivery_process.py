"""The delivery worker as a child process of the server: restarted when it dies, gone with the
server, and delivering what the server accepted."""

from __future__ import annotations

import os
import signal
import sys

import httpx
import pytest

from labelbridge.settings import Settings, as_env

from tests.helpers import capture, wait_for
from tests.procs import free_port, start_process, stop_process

TOKEN = "hook-secret"
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line for line in fh)
    except FileNotFoundError:
        return False


@pytest.fixture()
def server(tmp_path):
    port = free_port()
    env = {**os.environ, "LABELBRIDGE_DATA_DIR": str(tmp_path / "var"),
           "LABELBRIDGE_PORT": str(port), "LABELBRIDGE_WEBHOOK_TOKEN": TOKEN,
           "LABELBRIDGE_BATCH_MAX_WAIT": "0.05"}
    url = f"http://127.0.0.1:{port}"
    proc = start_process([sys.executable, "-m", "labelbridge", "serve"], env, url + "/health",
                         tmp_path / "server.log")
    yield proc, url, tmp_path / "var" / "outbox"
    stop_process(proc)


def worker(url: str) -> dict:
    return httpx.get(url + "/status").json()["delivery_worker"]


def test_worker_is_a_lower_priority_child_restarted_when_it_dies(server):
    proc, url, sink = server
    first = wait_for(lambda: (w := worker(url))["alive"] and w)
    assert first["mode"] == "process" and first["pid"] != proc.pid
    assert os.getpriority(os.PRIO_PROCESS, first["pid"]) > os.getpriority(os.PRIO_PROCESS,
                                                                           proc.pid)
    os.kill(first["pid"], signal.SIGKILL)
    again = wait_for(lambda: (w := worker(url))["alive"] and w["pid"] != first["pid"] and w)
    assert again["restarts"] == 1
    body = dict(CREATED, task=dict(CREATED["task"], data={**CREATED["task"]["data"],
                                                           "global_key": "img-1.jpg"}))
    r = httpx.post(url + "/webhook", json=body, headers={"X-Labelbridge-Token": TOKEN})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert wait_for(lambda: list(sink.glob("*.ndjson")))  # the new worker delivered it


def test_worker_dies_with_the_server(server):
    proc, url, _ = server
    pid = wait_for(lambda: (w := worker(url))["alive"] and w["pid"])
    os.kill(proc.pid, signal.SIGKILL)  # the server alone, not its process group
    proc.wait(10)
    wait_for(lambda: not alive(pid), timeout=10)


def test_the_child_sees_settings_given_in_code(tmp_path):
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path, LABELBRIDGE_WEBHOOK_TOKEN="s3cret",
                        LABELBRIDGE_BATCH_SIZE=7, LABELBRIDGE_DELIVERY_WORKER="thread")
    assert Settings(**{k: v for k, v in as_env(settings).items()}) == settings
