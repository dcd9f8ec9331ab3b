"""Webhook -> outbox -> delivery into the file sink (the embedded default), through the real app."""

from __future__ import annotations

import copy
import time
import uuid

import orjson
import pytest
from fastapi.testclient import TestClient

from labelbridge.groundtruth.outbox import Outbox
from labelbridge.labelstudio.mapping import Overrides
from labelbridge.model.ids import LABELBRIDGE_NAMESPACE
from labelbridge.service.runtime import make_deliverer
from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import capture, wait_for

TOKEN = "hook-secret"
HEADERS = {"X-Labelbridge-Token": TOKEN}
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")


def with_global_key(body: dict, key: str = "img-final0.jpg") -> dict:
    body = copy.deepcopy(body)
    tasks = body["task"] if isinstance(body["task"], list) else [body["task"]]
    for t in tasks:
        t["data"]["global_key"] = key
    return body


@pytest.fixture()
def service(tmp_path):
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path / "var", LABELBRIDGE_WEBHOOK_TOKEN=TOKEN,
                        LABELBRIDGE_BATCH_MAX_WAIT=0.05)
    with TestClient(create_app(settings)) as client:
        yield client, settings


def sink_lines(settings) -> list[dict]:
    return [orjson.loads(line) for f in sorted(settings.file_sink_dir.glob("*.ndjson"))
            if f.name != "removals.ndjson" for line in f.read_bytes().splitlines()]


def outbox_status(settings):
    ob = Outbox(settings.outbox_db)
    try:
        return ob.status()
    finally:
        ob.close()


def test_annotation_is_delivered_once_as_ndjson(service):
    client, settings = service
    body = with_global_key(CREATED)
    first = client.post("/webhook", json=body, headers=HEADERS)
    assert first.status_code == 200 and first.json()["accepted"] == 1
    again = client.post("/webhook", json=body, headers=HEADERS)   # the other webhook sender
    assert again.json() == {"status": "accepted", "action": "ANNOTATION_CREATED", "accepted": 0,
                            "duplicates": 1, "ignored": 0}
    lines = wait_for(lambda: sink_lines(settings))
    boxes = {l["uuid"]: l for l in lines if "bbox" in l}
    assert set(boxes) == {str(uuid.uuid5(LABELBRIDGE_NAMESPACE, rid))
                          for rid in ("lbBox000001", "lbBox000002")}
    car = boxes[str(uuid.uuid5(LABELBRIDGE_NAMESPACE, "lbBox000001"))]
    assert car["dataRow"] == {"globalKey": "img-final0.jpg"}
    assert car["bbox"] == {"top": 96.0, "left": 64.0, "height": 192.0, "width": 192.0}
    assert car["classifications"] == [{"name": "attr", "answer": [{"name": "occluded"}]}]
    weather = next(l for l in lines if l.get("name") == "weather")
    assert weather["answer"] == {"name": "sunny"}
    assert not any("relationship" in l for l in lines)   # ground truth: declared loss
    wait_for(lambda: outbox_status(settings)["counts"]["delivered"] == 1)
    time.sleep(0.3)
    assert len(sink_lines(settings)) == len(lines)       # delivered exactly once


def test_update_then_delete(service):
    client, settings = service
    body = with_global_key(CREATED)
    client.post("/webhook", json=body, headers=HEADERS)
    wait_for(lambda: outbox_status(settings)["counts"]["delivered"] == 1)
    updated = copy.deepcopy(body)
    updated["action"] = "ANNOTATION_UPDATED"
    updated["annotation"]["updated_at"] = "2026-11-22T12:30:00.000000Z"
    updated["annotation"]["result"][0]["value"]["x"] = 50
    assert client.post("/webhook", json=updated, headers=HEADERS).json()["accepted"] == 1
    wait_for(lambda: outbox_status(settings)["counts"]["delivered"] == 2)
    car_uuid = str(uuid.uuid5(LABELBRIDGE_NAMESPACE, "lbBox000001"))
    versions = [l["bbox"]["left"] for l in sink_lines(settings) if l["uuid"] == car_uuid]
    assert sorted(versions) == [64.0, 320.0]             # same uuid: the update overrides
    deleted = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 6}],
               "project": body["project"]}
    assert client.post("/webhook", json=deleted, headers=HEADERS).json()["accepted"] == 1
    wait_for(lambda: outbox_status(settings)["counts"]["delivered"] == 3)
    removal = orjson.loads((settings.file_sink_dir / "removals.ndjson").read_bytes())
    assert removal["dataRow"] == {"globalKey": "img-final0.jpg"}
    # which labels go: the annotation's and its regions' (the row may hold another annotation)
    assert removal["annotationId"] == 6
    assert sorted(removal["uuids"]) == sorted(str(uuid.uuid5(LABELBRIDGE_NAMESPACE, r)) for r in
                                              ("lbBox000001", "lbBox000002", "lbCls000001"))


def test_skipped_task_sends_nothing(service):
    client, settings = service
    body = with_global_key(CREATED)
    body["annotation"].update(was_cancelled=True, result=[])
    r = client.post("/webhook", json=body, headers=HEADERS)
    assert r.json()["ignored"] == 1 and r.json()["accepted"] == 0
    time.sleep(0.3)
    assert sink_lines(settings) == [] and outbox_status(settings)["counts"]["ignored"] == 1


def test_task_without_data_row_is_a_dead_letter_with_the_reason(service):
    client, settings = service
    client.post("/webhook", json=CREATED, headers=HEADERS)   # data has only the image URL
    wait_for(lambda: outbox_status(settings)["counts"]["failed"] == 1)
    ob = Outbox(settings.outbox_db)
    (dead,) = ob.items("failed")
    ob.close()
    assert "neither data_row_id nor global_key" in dead["last_error"]


@pytest.mark.parametrize("headers", [{}, {"X-Labelbridge-Token": "wrong"}])
def test_missing_or_wrong_token_is_401_and_nothing_is_queued(service, headers):
    client, settings = service
    r = client.post("/webhook", json=with_global_key(CREATED), headers=headers)
    assert r.status_code == 401 and "X-Labelbridge-Token" in r.json()["detail"]
    assert outbox_status(settings)["events_total"] == 0


def test_malformed_bodies_get_4xx_naming_the_field_and_are_kept(service):
    client, settings = service
    bad = copy.deepcopy(CREATED)
    bad["annotation"]["result"] = "nope"
    r = client.post("/webhook", json=bad, headers=HEADERS)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "annotation", "result"]
    r = client.post("/webhook", content=b"{oops", headers={**HEADERS,
                                                           "Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    ob = Outbox(settings.outbox_db)
    kept = ob.rejected()
    ob.close()
    assert [k["reason"].split(":")[0] for k in kept] == ["not valid JSON", "annotation.result"]
    stored = orjson.loads(kept[1]["body"])
    assert stored["annotation"]["result"] == "nope"
    assert "token" not in stored["project"] and "task_data_password" not in stored["project"]
    assert TOKEN not in orjson.dumps(kept[1]["headers"]).decode()


def test_other_actions_get_200_and_are_ignored(service):
    client, settings = service
    for name in ("basic-auth-flow/ml-auto-webhook_TASKS_CREATED.json",
                 "basic-auth-flow/ml-backend_POST-webhook_START_TRAINING.json"):
        r = client.post("/webhook", json=capture(name), headers=HEADERS)
        assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert outbox_status(settings)["events_total"] == 0


@pytest.mark.parametrize("annotations", [3, 40])
def test_a_batch_costs_the_same_few_outbox_writes_however_many_annotations(tmp_path,
                                                                            annotations):
    """The delivery worker's writes take the lock the webhook's commits need: a batch of
    annotations is claimed, named and settled in a fixed number of write transactions.
    (A batch holds one annotation per task, hence a task per annotation here.)"""
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path / "var", LABELBRIDGE_WEBHOOK_TOKEN=TOKEN,
                        LABELBRIDGE_DELIVERY_WORKER="off")
    with TestClient(create_app(settings)) as client:
        for i in range(annotations):
            body = with_global_key(CREATED, f"img-{i}.jpg")
            body["annotation"]["id"] = 5000 + i
            body["annotation"]["task"] = body["task"]["id"] = 7000 + i
            assert client.post("/webhook", json=body, headers=HEADERS).json()["accepted"] == 1
    outbox = Outbox(settings.outbox_db)
    writes: list[str] = []
    outbox.storage.set_trace(
        lambda sql: writes.append(sql) if sql.startswith("BEGIN IMMEDIATE") else None)
    deliverer = make_deliverer(settings, outbox, None, Overrides())
    try:
        deliverer.drain()
        assert outbox.status()["counts"]["delivered"] == annotations
    finally:
        outbox.close()
    lines = sink_lines(settings)  # per annotation: two boxes and the weather choice (the
    assert len(lines) == 3 * annotations  # relation is a declared loss for ground truth)
    assert {line["dataRow"]["globalKey"] for line in lines} == {
        f"img-{i}.jpg" for i in range(annotations)}
    # claim, import name, everything the import delivered, the claim that finds nothing left
    # (looking for abandoned batches is a read while there are none)
    assert len(writes) == 4
