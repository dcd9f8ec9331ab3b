"""The server as a real process, answering the requests Label Studio 1.23.2 really sends."""

from __future__ import annotations

import base64
import os
import sys
import time

import httpx
import pytest

from tests.helpers import CAPTURED_RUN, capture, captured_task_export
from tests.procs import free_port, start_process, stop_process

SETUP = capture("e2e-flow/ml-backend_POST-setup.json")
PREDICT = capture("e2e-flow/ml-backend_POST-predict_dm-retrieve-predictions.json")
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    captured_task_export(tmp / "export.ndjson")
    port = free_port()
    env = {**os.environ, "LABELBRIDGE_EXPORT": str(tmp / "export.ndjson"),
           "LABELBRIDGE_DATA_DIR": str(tmp / "var"), "LABELBRIDGE_PORT": str(port),
           "BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": "s3cret",
           "LABELBRIDGE_WEBHOOK_TOKEN": "hook-secret"}
    proc = start_process([sys.executable, "-m", "labelbridge", "serve"], env,
                         f"http://127.0.0.1:{port}/health", tmp / "server.log",
                         headers=AUTH)
    yield f"http://127.0.0.1:{port}", tmp
    stop_process(proc)


def test_health_and_root(server):
    url, _ = server
    for path in ("/", "/health"):
        r = httpx.get(url + path, headers=AUTH)
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "UP" and body["model_class"] == "LabelboxPredictions"
        assert body["model_version"] == CAPTURED_RUN and body["index_rows"] == 2


def test_setup_returns_the_model_run_as_model_version_quickly(server):
    url, _ = server
    started = time.perf_counter()
    r = httpx.post(url + "/setup", json=SETUP, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"model_version": CAPTURED_RUN}
    assert time.perf_counter() - started < 1.0   # Label Studio gives /setup 3 s


def test_predict_answers_one_element_per_task_in_order(server):
    url, _ = server
    r = httpx.post(url + "/predict", json=PREDICT, headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    results = r.json()["results"]
    assert len(results) == len(PREDICT["tasks"]) == 3
    first, second, third = results
    assert third == []      # no Labelbox data: nothing stored, Label Studio asks again later
    for n, (pred, label, score) in enumerate([(first, "cat", 0.9), (second, "dog", 0.7)], 1):
        assert set(pred) == {"result", "score", "model_version"}
        assert pred["model_version"] == CAPTURED_RUN and pred["score"] == score
        box, quality, scene = pred["result"]
        fid = f"cfeat{n:020d}"
        assert box == {"id": fid, "from_name": "label", "to_name": "image",
                       "type": "rectanglelabels", "original_width": 640,
                       "original_height": 480, "image_rotation": 0, "score": score,
                       "value": {"x": 10.0, "y": 10.0, "width": 20.0, "height": 20.0,
                                 "rotation": 0.0, "rectanglelabels": [label]}}
        assert quality["id"] == fid and quality["value"]["choices"] == ["good"]
        assert scene["from_name"] == "scene" and scene["value"] == {"choices": ["indoor"]}


def test_other_captured_predict_triggers(server):
    url, _ = server
    for name in ("task-open", "test-button", "interactive"):
        body = capture(f"e2e-flow/ml-backend_POST-predict_{name}.json")
        r = httpx.post(url + "/predict", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        assert len(r.json()["results"]) == len(body["tasks"])


def test_versions_status_and_metrics(server):
    url, _ = server
    assert httpx.get(url + "/versions", headers=AUTH).json() == {"versions": [CAPTURED_RUN]}
    status = httpx.get(url + "/status", headers=AUTH).json()
    assert status["index_rows"] == 2 and "outbox" in status
    assert httpx.get(url + "/metrics?format=json", headers=AUTH).json()["index_rows"] == 2
    text = httpx.get(url + "/metrics", headers=AUTH)
    assert text.headers["content-type"].startswith("text/plain")
    assert "labelbridge_index_rows 2.0" in text.text.splitlines()


def test_basic_auth_guards_ml_endpoints_not_the_webhook(server):
    url, _ = server
    for method, path in (("GET", "/health"), ("POST", "/setup"), ("POST", "/predict"),
                         ("GET", "/versions"), ("GET", "/metrics"), ("GET", "/status"),
                         ("GET", "/ready"), ("GET", "/openapi.json")):
        r = httpx.request(method, url + path, json={})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        wrong = httpx.request(method, url + path, json={},
                              headers={"Authorization": "Basic " +
                                       base64.b64encode(b"ls:nope").decode()})
        assert wrong.status_code == 401
    body = capture("basic-auth-flow/ml-auto-webhook_TASKS_CREATED.json")
    r = httpx.post(url + "/webhook", json=body, headers={"X-Labelbridge-Token": "hook-secret"})
    assert r.status_code == 200 and r.json()["status"] == "ignored"


@pytest.mark.parametrize("body, status, loc", [
    (b"{not json", 400, None),
    (b"[]", 422, []),
    (b'{"tasks": "x", "label_config": "<View/>"}', 422, ["tasks"]),
    (b'{"tasks": [1]}', 422, ["tasks", 0]),
    (b'{"tasks": [{"id": 1}]}', 422, ["tasks", 0, "data"]),
    (b'{"tasks": [{"id": 1, "data": {}}]}', 422, ["label_config"]),
    (b'{"tasks": [{"id": 1, "data": {}}], "label_config": "<View><Nope"}', 422, ["label_config"]),
])
def test_bad_predict_bodies_get_4xx_naming_the_field(server, body, status, loc):
    url, _ = server
    r = httpx.post(url + "/predict", content=body, headers={**AUTH, "Content-Type":
                                                             "application/json"})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    if loc is None:
        assert "not valid JSON" in detail
    else:
        assert detail[0]["loc"] == ["body", *loc] and detail[0]["msg"]


def test_the_server_log_holds_no_secrets(server):
    _, tmp = server
    log = (tmp / "server.log").read_text()
    assert "s3cret" not in log and "hook-secret" not in log
