"""The edit report through the real app: a prediction served by /predict, an annotation made
from it arriving by webhook, delivered (file sink), compared, reported by `labelbridge report`
and /status."""

from __future__ import annotations

import copy
import csv
import io
import subprocess
import sys

import orjson
import pytest
from fastapi.testclient import TestClient

from labelbridge.groundtruth.edit_report import EditStore
from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import IMAGE_CONFIG, bbox, capture, export_row, wait_for

TOKEN = "hook-secret"
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
W, H = 640, 480
TASK = {"image": "http://127.0.0.1:9/er-0.jpg", "global_key": "er-0.jpg"}
RUN = "crunedits0000000000000001"


def ids(n: int) -> str:
    return f"cfeat{n:020d}"


@pytest.fixture()
def service(tmp_path):
    boxes = [bbox(ids(1), "Car", 10, 20, 100, 50), bbox(ids(2), "Car", 100, 100, 100, 100),
             bbox(ids(3), "Person", 300, 300, 40, 80), bbox(ids(4), "Car", 400, 50, 20, 20)]
    row = export_row(boxes, width=W, height=H, global_key="er-0.jpg", row_data=TASK["image"],
                     runs={RUN: {"predictions": [{"annotations": {"objects": boxes}}]}})
    (tmp_path / "export.ndjson").write_bytes(orjson.dumps(row) + b"\n")
    settings = Settings(LABELBRIDGE_EXPORT=tmp_path / "export.ndjson",
                        LABELBRIDGE_DATA_DIR=tmp_path / "var", LABELBRIDGE_WEBHOOK_TOKEN=TOKEN,
                        LABELBRIDGE_BATCH_MAX_WAIT=0.05, LABELBRIDGE_DELIVERY_WORKER="thread")
    with TestClient(create_app(settings)) as client:
        yield client, settings


def annotation(result: list[dict], annotation_id: int, parent: int | None = 1,
               action: str = "ANNOTATION_CREATED") -> dict:
    body = copy.deepcopy(CREATED)
    body["action"] = action
    body["task"]["data"] = dict(TASK)
    body["project"]["label_config"] = IMAGE_CONFIG
    body["annotation"].update(id=annotation_id, result=result, parent_prediction=parent,
                              updated_at=f"2026-12-01T10:00:0{annotation_id}.000000Z")
    return body


def edited(prediction: list[dict]) -> list[dict]:
    """Accept box 1, move box 2 right by 50 px, relabel box 3, delete box 4, draw a new one."""
    out = []
    for r in copy.deepcopy(prediction):
        if r["id"] == ids(2):
            r["value"]["x"] += 50 / W * 100
        elif r["id"] == ids(3):
            r["value"]["rectanglelabels"] = ["Bicycle"]
        elif r["id"] == ids(4):
            continue
        out.append(r)
    out.append({"id": "manual1", "from_name": "label", "to_name": "image",
                "type": "rectanglelabels", "original_width": W, "original_height": H,
                "value": {"x": 1, "y": 1, "width": 2, "height": 2, "rotation": 0,
                          "rectanglelabels": ["Person"]}})
    return out


def report(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labelbridge", "report", *args],
                          env={"LABELBRIDGE_DATA_DIR": str(settings.data_dir), "PATH": ""},
                          capture_output=True, text=True, timeout=60)


def test_an_edited_prediction_is_reported_region_by_region(service):
    client, settings = service
    r = client.post("/predict", json={"tasks": [{"id": 1, "data": TASK}],
                                      "label_config": IMAGE_CONFIG})
    (prediction,) = r.json()["results"]
    assert [x["id"] for x in prediction["result"]] == [ids(1), ids(2), ids(3), ids(4)]
    hook = client.post("/webhook", json=annotation(edited(prediction["result"]), 1),
                       headers={"X-Labelbridge-Token": TOKEN})
    assert hook.status_code == 200 and hook.json()["accepted"] == 1

    def recorded():
        if not settings.edits_db.exists():
            return None
        store = EditStore(settings.edits_db)
        try:
            s = store.summary()
            return s if s.annotations else None
        finally:
            store.close()
    s = wait_for(recorded, what="the edit report")
    figures = {f.label: f.as_dict() for f in s.labels}
    assert figures["Car"] | {"mean_iou_moved": None} == {
        "label": "Car", "predicted": 3, "accepted": 1, "moved": 1, "relabelled": 0,
        "attributes_changed": 0, "deleted": 1, "added": 0, "acceptance_rate": 1 / 3,
        "mean_iou_moved": None}
    # box 2: 100x100 moved by 50 px: intersection 5000 over union 15000
    assert figures["Car"]["mean_iou_moved"] == pytest.approx(1 / 3, abs=1e-6)
    assert (figures["Person"]["predicted"], figures["Person"]["relabelled"],
            figures["Person"]["added"], figures["Person"]["acceptance_rate"]) == (1, 1, 1, 0.0)
    assert client.get("/status").json()["edits"] | {"mean_iou_moved": None} == {
        "annotations": 1, "predicted": 4, "accepted": 1, "moved": 1, "relabelled": 1,
        "attributes_changed": 0, "deleted": 1, "added": 1, "acceptance_rate": 0.25,
        "mean_iou_moved": None}

    as_json = report(settings, "--format", "json", "--model-version", RUN)
    assert as_json.returncode == 0, as_json.stderr
    doc = orjson.loads(as_json.stdout)
    assert doc["annotations"] == 1 and doc["total"]["moved"] == 1
    rows = list(csv.DictReader(io.StringIO(report(settings, "--format", "csv").stdout)))
    assert [r["label"] for r in rows] == ["Car", "Person", "(all)"]
    assert rows[-1]["accepted"] == "1" and float(rows[0]["mean_iou_moved"]) == pytest.approx(1 / 3)
    table = report(settings)
    assert table.returncode == 0 and "acceptance rate" in table.stdout and "0.333" in table.stdout
    unknown = report(settings, "--model-version", "nope")
    assert unknown.returncode == 2 and f"(known: {RUN})" in " ".join(unknown.stderr.split())


def test_an_annotation_not_made_from_the_prediction_is_not_reported(service):
    client, settings = service
    client.post("/predict", json={"tasks": [{"id": 1, "data": TASK}],
                                  "label_config": IMAGE_CONFIG})
    drawn = [{"id": "scratch1", "from_name": "label", "to_name": "image",
              "type": "rectanglelabels", "original_width": W, "original_height": H,
              "value": {"x": 5, "y": 5, "width": 5, "height": 5, "rotation": 0,
                        "rectanglelabels": ["Car"]}}]
    client.post("/webhook", json=annotation(drawn, 2, parent=None),
                headers={"X-Labelbridge-Token": TOKEN})
    wait_for(lambda: list(settings.file_sink_dir.glob("*.ndjson")), what="the delivery")
    store = EditStore(settings.edits_db)
    assert store.summary().annotations == 0
    store.close()
    missing = report(settings.model_copy(update={"data_dir": settings.data_dir / "none"}))
    assert missing.returncode == 1 and "no edit report" in missing.stderr


def summary(settings: Settings):
    store = EditStore(settings.edits_db)
    try:
        return store.summary()
    finally:
        store.close()


def two_annotations(client, settings) -> dict:
    """Annotation 3 edited as ``edited`` does, annotation 4 the prediction as it is; both in
    the report. Returns the webhook headers."""
    r = client.post("/predict", json={"tasks": [{"id": 1, "data": TASK}],
                                      "label_config": IMAGE_CONFIG})
    prediction = r.json()["results"][0]["result"]
    hook = {"X-Labelbridge-Token": TOKEN}
    client.post("/webhook", json=annotation(edited(prediction), 3), headers=hook)
    client.post("/webhook", json=annotation(prediction, 4), headers=hook)
    wait_for(lambda: summary(settings).annotations == 2, what="both in the edit report")
    return hook


def test_an_emptied_annotation_deleted_every_predicted_region(service):
    client, settings = service
    hook = two_annotations(client, settings)
    emptied = annotation([], 4, action="ANNOTATION_UPDATED")
    emptied["annotation"]["updated_at"] = "2026-12-01T11:00:00.000000Z"
    client.post("/webhook", json=emptied, headers=hook)
    total = wait_for(lambda: (t := summary(settings).total) and t.counts["deleted"] == 5 and t,
                     what="the emptied annotation's figures")
    assert (total.counts["predicted"], total.counts["accepted"]) == (8, 1)
    assert summary(settings).annotations == 2


def test_a_deleted_annotation_leaves_the_report(service):
    client, settings = service
    hook = two_annotations(client, settings)
    client.post("/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 4}],
                                  "project": CREATED["project"]}, headers=hook)
    removals = settings.file_sink_dir / "removals.ndjson"
    wait_for(lambda: removals.exists() and b'"annotationId":4' in removals.read_bytes(),
             what="the deletion delivered")
    s = summary(settings)
    assert s.annotations == 1 and s.total.counts == {   # annotation 3's alone
        "predicted": 4, "accepted": 1, "moved": 1, "relabelled": 1, "attributes_changed": 0,
        "deleted": 1, "added": 1}
    assert client.get("/status").json()["edits"]["annotations"] == 1
