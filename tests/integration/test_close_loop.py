"""Closing the loop in Labelbox, through the real SDK against the stand-in: a run served by the
app, an edited annotation delivered as ground truth, then its label attached to the run and the
data row's edit figures sent to the run as custom metrics."""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient

from labelbridge.groundtruth.edit_report import EditStore
from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import IMAGE_CONFIG, MODEL, bbox, capture, export_row, wait_for
from tests.lbstandin import Feature, LabelboxStandIn, new_cuid

TOKEN = "hook-secret"
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
PROJECT, RUN = new_cuid(), new_cuid()
W, H = 640, 480
ROWS = [(f"cdrloop{i:018d}", f"loop-{i}.jpg") for i in range(2)]


def fid(i: int, n: int) -> str:
    return f"cloop{i}{n:019d}"


@pytest.fixture()
def world(tmp_path):
    standin = LabelboxStandIn(api_key="lb-key").start()
    standin.add_project(PROJECT, ontology=[Feature("Car", "bbox"), Feature("Person", "bbox")])
    standin.add_data_rows(PROJECT, [{"id": r, "global_key": gk, "row_data": f"http://x/{gk}",
                                     "media_attributes": {"width": W, "height": H}}
                                    for r, gk in ROWS])
    rows = []
    for i, (row_id, gk) in enumerate(ROWS):
        boxes = [bbox(fid(i, 1), "Car", 10, 20, 100, 50), bbox(fid(i, 2), "Car", 100, 100, 100,
                                                                  100)]
        rows.append(export_row(boxes, width=W, height=H, data_row_id=row_id, global_key=gk,
                               row_data=f"http://x/{gk}", runs={RUN: {"name": "loop", "predictions": [
                                   {"annotations": {"objects": boxes}}]}}))
    standin.add_model_run(MODEL, RUN, "loop", rows)
    settings = Settings(
        LABELBRIDGE_DATA_DIR=tmp_path / "var", LABELBRIDGE_WEBHOOK_TOKEN=TOKEN,
        LABELBRIDGE_BATCH_MAX_WAIT=0.05, LABELBRIDGE_DELIVERY_WORKER="thread",
        LABELBRIDGE_IMPORT_POLL_INTERVAL=0.05, LABELBRIDGE_REFRESH_INTERVAL=0.2,
        LABELBOX_API_KEY="lb-key", LABELBOX_PROJECT_ID=PROJECT, LABELBOX_MODEL_RUN_ID=RUN,
        LABELBOX_ENDPOINT=standin.endpoint, LABELBOX_REST_ENDPOINT=standin.rest_endpoint,
        LABELBOX_APP_URL=standin.app_url, LABELBOX_ATTACH_LABELS=True,
        LABELBOX_EDIT_METRICS=True)
    with TestClient(create_app(settings)) as client:
        yield client, settings, standin
    standin.stop()


def annotate(client, i: int, move: bool) -> None:
    gk = ROWS[i][1]
    task = {"image": f"http://x/{gk}", "global_key": gk}
    (pred,) = client.post("/predict", json={"tasks": [{"id": i, "data": task}],
                                            "label_config": IMAGE_CONFIG}).json()["results"]
    result = copy.deepcopy(pred["result"])
    if move:
        result[1]["value"]["x"] += 50 / W * 100
    body = copy.deepcopy(CREATED)
    body["task"]["data"], body["task"]["id"] = task, 100 + i
    body["project"]["label_config"] = IMAGE_CONFIG
    body["annotation"].update(id=10 + i, task=100 + i, result=result, parent_prediction=1)
    r = client.post("/webhook", json=body, headers={"X-Labelbridge-Token": TOKEN})
    assert r.json().get("accepted") == 1, r.text


def test_labels_are_attached_to_the_run_and_edit_figures_sent_as_metrics(world):
    client, settings, standin = world
    assert client.get("/health").json()["model_version"] == RUN
    annotate(client, 0, move=True)
    annotate(client, 1, move=False)
    state = wait_for(lambda: (s := standin.model_run_state(RUN))["labels"] and
                     len(s["metrics"]) >= 13 and s, timeout=30, what="the loop to close")
    labels = {lab["data_row_id"]: lab["id"] for lab in standin.labels(PROJECT)}
    assert state["labels"] == sorted(labels.values())
    metrics = {(m["data_row_id"], m["metric_name"]): (m["value"], m["aggregation"])
               for m in state["metrics"]}
    row0, row1 = ROWS[0][0], ROWS[1][0]
    assert metrics[(row0, "labelbridge_accepted")] == (1.0, "SUM")
    assert metrics[(row0, "labelbridge_moved")] == (1.0, "SUM")
    assert metrics[(row0, "labelbridge_moved_iou")] == (pytest.approx(1 / 3), "ARITHMETIC_MEAN")
    assert metrics[(row1, "labelbridge_accepted")] == (2.0, "SUM")
    assert (row1, "labelbridge_moved_iou") not in metrics       # nothing moved there
    assert {s["status"] for imp in state["imports"] for s in imp["statuses"]} == {"SUCCESS"}
    store = EditStore(settings.edits_db)
    # the closer marks the rows done just after Labelbox answered the metrics: wait for it
    wait_for(lambda: store.pending_loop() == [], timeout=10, what="the rows marked done")
    store.close()
