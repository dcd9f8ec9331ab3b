"""labelbridge as a process delivering to the Labelbox stand-in (through the real SDK): the
service, the stand-in project its ground truth goes to, and what to read back from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from labelbridge.groundtruth.outbox import Outbox
from labelbridge.model.ids import LABELBRIDGE_NAMESPACE

from tests.helpers import capture
from tests.lbstandin import Feature, LabelboxStandIn, new_cuid
from tests.procs import free_port, start_process, stop_process

TOKEN = "hook-secret"
PROJECT = new_cuid()
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
ONTOLOGY = [Feature("Car", "bbox", nested=[Feature("attr", "checklist",
                                                   options=["occluded", "truncated"])]),
            Feature("Person", "bbox", nested=[Feature("attr", "checklist",
                                                      options=["occluded", "truncated"])]),
            Feature("weather", "radio", options=["sunny", "rainy"]),
            Feature("drives", "relationship")]


def u5(region_id: str) -> str:
    return str(uuid.uuid5(LABELBRIDGE_NAMESPACE, region_id))


class Service:
    """labelbridge as a process, restartable on the same data dir and port."""

    def __init__(self, tmp: Path, standin: LabelboxStandIn, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "LABELBRIDGE_DATA_DIR": str(tmp / "var"),
                    "LABELBRIDGE_PORT": str(self.port), "LABELBRIDGE_WEBHOOK_TOKEN": TOKEN,
                    "LABELBOX_API_KEY": "test-key", "LABELBOX_PROJECT_ID": PROJECT,
                    "LABELBOX_ENDPOINT": standin.endpoint,
                    "LABELBOX_REST_ENDPOINT": standin.rest_endpoint,
                    "LABELBOX_APP_URL": standin.app_url,
                    "LABELBRIDGE_BATCH_MAX_WAIT": "0.2", "LABELBRIDGE_IMPORT_POLL_INTERVAL": "0.1",
                    "LABELBRIDGE_RETRY_BASE": "0.2", "LABELBRIDGE_RETRY_MAX": "1",
                    # after a kill -9 the next worker waits this long for the dead one's lease
                    "LABELBRIDGE_LEASE_SECONDS": "3", **env}
        self.log = tmp / "service.log"
        self.proc: subprocess.Popen | None = None

    def start(self, **env: str) -> Service:
        self.env.update(env)
        self.proc = start_process([sys.executable, "-m", "labelbridge", "serve"], self.env,
                                  self.url + "/health", self.log)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        stop_process(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def post(self, body: dict) -> httpx.Response:
        r = httpx.post(self.url + "/webhook", json=body, headers={"X-Labelbridge-Token": TOKEN})
        assert r.status_code == 200, r.text
        return r

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labelbridge", *args], env=self.env,
                              capture_output=True, text=True, timeout=60)

    def status(self) -> dict:
        return json.loads(self.cli("outbox", "status", "--json").stdout)

    def states(self, annotation_ids) -> dict[int, list[str]]:
        """annotation id -> the states of its work items (read from the outbox file)."""
        ob = Outbox(Path(self.env["LABELBRIDGE_DATA_DIR"]) / "outbox.sqlite3")
        try:
            wanted, out = set(annotation_ids), {}
            for item in ob.items(limit=100_000):
                if item["annotation_id"] in wanted:
                    out.setdefault(item["annotation_id"], []).append(item["state"])
            return out
        finally:
            ob.close()

    def wait_settled(self, annotation_ids, timeout: float = 60) -> dict[int, list[str]]:
        """Wait until none of these annotations has work pending or in flight."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.states(annotation_ids)
            if len(got) == len(set(annotation_ids)) and not any(
                    s in ("pending", "in_flight") for states in got.values() for s in states):
                return got
            time.sleep(0.2)
        raise AssertionError(f"not settled in time: {self.states(annotation_ids)}\n"
                             f"{self.log.read_text()[-4000:]}")

    def wait_delivered(self, n: int, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st["counts"]["delivered"] >= n:
                return st
            time.sleep(0.2)
        raise AssertionError(f"not delivered in time: {self.status()}\n{self.log.read_text()}")


def make_standin(rows: int = 40, ontology: list[Feature] = ONTOLOGY) -> LabelboxStandIn:
    """A running stand-in with the project PROJECT and data rows img-0.jpg ... img-<rows-1>.jpg."""
    s = LabelboxStandIn(api_key="test-key").start()
    s.add_project(PROJECT, name="bridge", ontology=ontology)
    s.add_data_rows(PROJECT, [{"id": new_cuid(), "global_key": f"img-{i}.jpg",
                               "row_data": f"http://img/img-{i}.jpg",
                               "media_attributes": {"width": 640, "height": 480}}
                              for i in range(rows)])
    return s


@pytest.fixture()
def standin():
    s = make_standin()
    yield s
    s.stop()


@pytest.fixture()
def service(tmp_path, standin):
    svc = Service(tmp_path, standin)
    yield svc
    svc.stop()


def lines_per_uuid(standin) -> Counter:
    """How many successful import lines carried each uuid (exactly once means 1)."""
    counts: Counter = Counter()
    for imp in standin.imports(PROJECT):
        for line, status in zip(imp["lines"], imp["statuses"] or []):
            if status.get("status") == "SUCCESS":
                counts[line["uuid"]] += 1
    return counts


def live_labels(standin) -> list[dict]:
    """The project's labels, features named (the bridge sends them by schemaId)."""
    return standin.named(PROJECT, standin.labels(PROJECT))


def labels_per_row(standin, global_keys) -> dict[str, int]:
    """How many live labels each data row holds (exactly once means 1)."""
    counts = Counter(label["global_key"] for label in standin.labels(PROJECT))
    return {key: counts[key] for key in global_keys}
