"""Serving Labelbox model runs through the real SDK, against the stand-in: a 5,000-row run
exported in several chunks, a restart that exports nothing, an export that fails mid-stream,
and a newer run swapped in while Label Studio keeps asking."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import IMAGE_CONFIG, MODEL, run_rows, wait_for
from tests.lbstandin import LabelboxStandIn, new_cuid
from tests.procs import free_port, start_process, stop_process

ROWS = 5000
R1, R2 = "crunone000000000000000001", "cruntwo000000000000000002"
PROJECT = new_cuid()
W = 640
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:pw").decode()}


def x_of(left: float) -> float:
    return left / W * 100


X = {R1: x_of(10.0), R2: x_of(30.0)}


def tasks(ids) -> list[dict]:
    return [{"id": i, "data": {"image": f"http://127.0.0.1:9/mr-{i}.jpg",
                               "global_key": f"mr-{i}.jpg"}} for i in ids]


class Server:
    def __init__(self, tmp: Path, standin: LabelboxStandIn) -> None:
        self.tmp, self.port = tmp, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("LABELBRIDGE_", "LABELBOX_", "LABEL_STUDIO_"))}
        self.env = {**clean, "LABELBOX_API_KEY": "lb-key", "LABELBOX_PROJECT_ID": PROJECT,
                    "LABELBOX_MODEL_ID": MODEL, "LABELBOX_ENDPOINT": standin.endpoint,
                    "LABELBOX_REST_ENDPOINT": standin.rest_endpoint,
                    "LABELBOX_APP_URL": standin.app_url,
                    "LABELBRIDGE_DATA_DIR": str(tmp / "var"), "LABELBRIDGE_PORT": str(self.port),
                    "LABELBRIDGE_REFRESH_INTERVAL": "1", "LABELBRIDGE_DELIVERY_WORKER": "off",
                    "BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": "pw"}
        self.proc = None

    def start(self) -> None:
        self.proc = start_process([sys.executable, "-m", "labelbridge", "serve"], self.env,
                                  self.url + "/health", self.tmp / "server.log", timeout=60,
                                  headers=AUTH)

    def stop(self) -> None:
        stop_process(self.proc)

    def get(self, path: str) -> dict:
        r = httpx.get(self.url + path, headers=AUTH, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def setup(self) -> str:
        r = httpx.post(self.url + "/setup", json={"project": "1", "schema": IMAGE_CONFIG},
                       headers=AUTH, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["model_version"]

    def predict(self, ids) -> list:
        r = httpx.post(self.url + "/predict", headers=AUTH, timeout=30, json={
            "tasks": tasks(ids), "label_config": IMAGE_CONFIG})
        assert r.status_code == 200, r.text
        return r.json()["results"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modelruns")
    standin = LabelboxStandIn(api_key="lb-key", export_chunk_bytes=512 << 10).start()
    standin.add_project(PROJECT, name="p")
    standin.add_model(MODEL, name="detector")
    standin.add_model_run(MODEL, R1, "run-1", run_rows(R1, ROWS, tag="a", left=10.0),
                          created_at="2025-01-01T00:00:00.000Z")
    server = Server(tmp, standin)
    server.start()
    yield standin, server
    server.stop()
    standin.stop()


def test_a_5000_row_run_is_exported_in_several_chunks_and_served(world):
    standin, server = world
    assert standin.calls["exportFile"] >= 5   # 3 MB of rows in chunks of 512 KiB
    health = server.get("/health")
    assert (health["model_version"], health["index_rows"]) == (R1, ROWS)
    assert server.setup() == R1
    sample = [0, 1, 2499, ROWS - 1]
    for i, pred in zip(sample, server.predict(sample)):
        (box,) = pred["result"]
        assert pred["model_version"] == R1 and box["id"] == f"cfa{i:022d}"
        assert box["value"]["x"] == pytest.approx(X[R1])
    assert server.predict([ROWS + 7]) == [[]]   # not in the run: Label Studio asks again later


def test_a_restart_does_not_export_an_unchanged_run_again(world):
    standin, server = world
    exports = standin.calls["exportDataRowsInModelRun"]
    server.stop()
    server.start()
    assert server.get("/health")["model_version"] == R1
    assert standin.calls["exportDataRowsInModelRun"] == exports
    assert standin.calls["modelRun"] + standin.calls["model"] >= 1  # it did look


class Hammer(threading.Thread):
    """Label Studio's side during the swap: /setup then /predict, again and again."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.stop = server, threading.Event()
        self.seen: list[tuple[str, str]] = []     # ("setup" | "predict", model version)
        self.failures: list[str] = []

    def run(self) -> None:
        ids = [3, 1200, 4999]
        while not self.stop.is_set():
            try:
                self.seen.append(("setup", self.server.setup()))
                for pred in self.server.predict(ids):
                    version = pred["model_version"]
                    if pred["result"][0]["value"]["x"] != pytest.approx(X[version]):
                        self.failures.append(f"{version} served another run's geometry")
                    self.seen.append(("predict", version))
            except Exception as exc:  # noqa: BLE001 - every failure is a finding here
                self.failures.append(repr(exc))


def test_a_failed_export_keeps_serving_and_a_newer_run_swaps_in_without_a_failed_request(world):
    standin, server = world
    index = server.tmp / "var" / "predictions.sqlite3"
    served = index.stat().st_ino
    hammer = Hammer(server)
    hammer.start()
    standin.fail_export(R2, after_chunks=2)             # the first export of run 2 breaks
    standin.add_model_run(MODEL, R2, "run-2", run_rows(R2, ROWS, tag="b", left=30.0))
    wait_for(lambda: server.get("/status")["index"]["last_error"], timeout=60,
             what="the failed export to be reported")
    assert "500" in server.get("/status")["index"]["last_error"]
    assert index.stat().st_ino == served      # on disk too: a restart would serve run 1
    health = server.get("/health") | {"status": None, "outbox": None}
    assert health == {"status": None, "outbox": None, "model_class": "LabelboxPredictions",
                      "model_version": R1, "index_rows": ROWS}
    wait_for(lambda: server.setup() == R2, timeout=60, what="run 2 to be served")
    time.sleep(1.0)
    hammer.stop.set()
    hammer.join(30)
    assert hammer.failures == []
    versions = [v for _, v in hammer.seen]
    assert set(versions) == {R1, R2}
    first_new = versions.index(R2)
    assert R1 not in versions[first_new:]   # once run 2 is served, never run 1 again
    assert [p["model_version"] for p in server.predict([0, ROWS - 1])] == [R2, R2]
    assert server.get("/status")["index"]["swaps"] == 1
    assert len(list((server.tmp / "var").glob("predictions.sqlite3.build-*"))) == 0


def index_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labelbridge", "index", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_index_model_run_by_hand_shows_progress_and_a_failure_keeps_the_old_index(world,
                                                                                  tmp_path):
    standin, server = world
    env = {**server.env, "LABELBRIDGE_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    env.pop("LABELBOX_MODEL_ID")
    ok = index_cli(env, "--model-run", R1)
    assert ok.returncode == 0, ok.stderr
    assert "5,000 rows" in ok.stderr and "rows/s" in ok.stderr
    assert f"indexed 5,000 data rows (0 without predictions); model version {R1}" in ok.stderr
    index = tmp_path / "predictions.sqlite3"
    built = index.stat().st_ino
    standin.fail_export(R2, after_chunks=1, kind="drop")
    failed = index_cli(env, "--model-run", R2)
    assert failed.returncode == 1, failed.stderr
    assert "error:" in failed.stderr and "Traceback" not in failed.stderr
    assert index.stat().st_ino == built and not list(tmp_path.glob("*.build-*"))
    missing = index_cli(env, "--model-run", "cnosuchrun000000000000001")
    assert missing.returncode == 1 and "cnosuchrun000000000000001" in missing.stderr
