"""Bodies are bounded per endpoint, tasks per /predict and result items per annotation too;
every refusal is JSON naming the limit and its setting (issue 16, defect 3). Through the app in
this process; slow and huge clients against a real server are in
tests/integration/test_server_limits.py."""

from __future__ import annotations

import base64
import copy

import orjson
import pytest
from fastapi.testclient import TestClient

from labelbridge.groundtruth.outbox import Outbox
from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import capture

HOOK = {"X-Labelbridge-Token": "hook-secret"}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
PREDICT = capture("e2e-flow/ml-backend_POST-predict_dm-retrieve-predictions.json")


@pytest.fixture()
def client(tmp_path):
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path, LABELBRIDGE_WEBHOOK_TOKEN="hook-secret",
                        BASIC_AUTH_USER="ls", BASIC_AUTH_PASS="s3cret",
                        LABELBRIDGE_DELIVERY_WORKER="off", LABELBRIDGE_MAX_BODY_WEBHOOK="64KiB",
                        LABELBRIDGE_MAX_BODY_PREDICT="128KiB", LABELBRIDGE_MAX_BODY_SETUP="8KiB",
                        LABELBRIDGE_MAX_PREDICT_TASKS=5, LABELBRIDGE_MAX_REGIONS=3)
    with TestClient(create_app(settings)) as c:
        c.settings = settings
        yield c


def outbox(settings) -> Outbox:
    return Outbox(settings.outbox_db)


def padded(body: dict, size: int) -> bytes:
    body = copy.deepcopy(body)
    body["task"]["data"]["padding"] = "x" * size
    return orjson.dumps(body)


@pytest.mark.parametrize("path, headers, limit, setting", [
    ("/webhook", HOOK, 64 << 10, "LABELBRIDGE_MAX_BODY_WEBHOOK"),
    ("/webhook/", HOOK, 64 << 10, "LABELBRIDGE_MAX_BODY_WEBHOOK"),
    ("/predict", AUTH, 128 << 10, "LABELBRIDGE_MAX_BODY_PREDICT"),
    ("/setup", AUTH, 8 << 10, "LABELBRIDGE_MAX_BODY_SETUP"),
    ("/health", AUTH, 64 << 10, "a fixed limit"),
])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_endpoint_limit_is_413_json(client, path, headers, limit, setting,
                                                     chunked):
    raw = padded(CREATED, limit + 1)
    content = iter([raw[i:i + 4096] for i in range(0, len(raw), 4096)]) if chunked else raw
    r = client.request("GET" if path == "/health" else "POST", path, content=content,
                       headers={**headers, "Content-Type": "application/json"})
    if path == "/health" and chunked:   # never read (never held): answered, then closed
        assert r.status_code == 200 and r.headers["connection"] == "close"
        return
    assert r.status_code == 413, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body"] and err["type"] == "too_large"
    assert f"limit of {limit} bytes ({setting}" in err["msg"]
    assert r.headers["connection"] == "close"
    ob = outbox(client.settings)
    assert ob.status()["events_total"] == 0
    ob.close()


def test_a_body_just_under_the_limit_passes(client):
    body = copy.deepcopy(CREATED)
    body["annotation"]["result"] = body["annotation"]["result"][:3]
    raw = padded(body, (64 << 10) - len(padded(body, 0)) - 100)
    r = client.post("/webhook", content=raw, headers={**HOOK, "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 1


def test_too_many_tasks_is_413_naming_the_limit(client):
    body = dict(PREDICT, tasks=PREDICT["tasks"] * 2)   # 6 tasks, limit 5
    r = client.post("/predict", json=body, headers=AUTH)
    assert r.status_code == 413
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "tasks"] and "LABELBRIDGE_MAX_PREDICT_TASKS" in err["msg"]
    assert "at most 5" in err["msg"]
    ok = client.post("/predict", json=dict(PREDICT, tasks=PREDICT["tasks"][:1] * 5), headers=AUTH)
    assert ok.status_code == 200 and len(ok.json()["results"]) == 5


def test_too_many_result_items_is_422_naming_the_limit_and_kept(client):
    body = copy.deepcopy(CREATED)
    body["annotation"]["result"] = body["annotation"]["result"] * 2   # 10 items, limit 3
    r = client.post("/webhook", json=body, headers=HOOK)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "annotation", "result"]
    assert "at most 3 per annotation (LABELBRIDGE_MAX_REGIONS)" in err["msg"]
    ob = outbox(client.settings)
    (kept,) = ob.rejected()
    ob.close()
    assert "LABELBRIDGE_MAX_REGIONS" in kept["reason"]


def test_bulk_annotations_are_each_checked(client):
    body = copy.deepcopy(CREATED)
    small = dict(body["annotation"], result=body["annotation"]["result"][:2])
    big = dict(body["annotation"], id=7, result=body["annotation"]["result"][:4])
    body.update(action="ANNOTATIONS_CREATED", annotation=[small, big], task=[body["task"]])
    r = client.post("/webhook", json=body, headers=HOOK)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "annotation", 1, "result"]
