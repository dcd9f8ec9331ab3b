"""Masks through the running service, against the Labelbox stand-in: a model run with a
single-instance and a composite mask (its URLs refuse requests without the API key) is exported
through the SDK and indexed with the key, each PNG fetched once, and ``/predict`` answers brush
predictions from the index; the accepted prediction comes back as an annotation webhook and
reaches the stand-in as a valid mask import, one instance per region, with uuid5 of the feature
ids. The run's export file, indexed without the key, still builds; its masks are losses."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from label_studio_sdk.converter import brush as sdk

from labelbridge.model.ids import LABELBRIDGE_NAMESPACE

from tests.helpers import ROOT, capture
from tests.lbstandin import Feature, LabelboxStandIn, new_cuid
from tests.maskgen import composite, single_png
from tests.procs import free_port, start_process, stop_process

TOKEN = "hook-secret"
PROJECT, MODEL, RUN = new_cuid(), new_cuid(), new_cuid()
DATA_ROW = new_cuid()
CONFIG = (ROOT / "configs" / "segmentation.xml").read_text()
W, H = 64, 48
SKY = np.zeros((H, W), dtype=bool)
SKY[:12, :] = True
LABELS = np.zeros((H, W), dtype=np.int64)
LABELS[15:40, 5:20], LABELS[15:40, 25:40], LABELS[42:, 10:60] = 1, 2, 3
COLORS = [(214, 39, 40), (214, 40, 40), (255, 127, 14)]
FIDS = {"sky": "cfsky00000000000000000001", 1: "cfbuild000000000000000001",
        2: "cfbuild000000000000000002", 3: "cfvehicle0000000000000001"}
ONTOLOGY = [Feature(name, "mask", nested=[Feature("visibility", "radio",
                                                  options=["full", "partial"])])
            for name in ("Sky", "Building", "Vehicle")]


def u5(region_id: str) -> str:
    return str(uuid.uuid5(LABELBRIDGE_NAMESPACE, region_id))


def mask_object(fid: str, name: str, key: str, ref: dict) -> dict:
    return {"feature_id": fid, "name": name, "annotation_kind": "ImageSegmentationMask",
            key: ref, "classifications": [{"feature_id": fid[:-1] + "v", "name": "visibility",
                                           "radio_answer": {"name": "partial"}}]}


@pytest.fixture(scope="module")
def standin():
    s = LabelboxStandIn(api_key="test-key").start()
    s.add_project(PROJECT, name="seg", ontology=ONTOLOGY)
    s.add_data_rows(PROJECT, [{"id": DATA_ROW, "global_key": "street.jpg",
                               "row_data": "http://img/street.jpg",
                               "media_attributes": {"width": W, "height": H}}])
    sky = s.add_mask(single_png(SKY, "white"), project_id=PROJECT, feature_id=FIDS["sky"])
    comp = s.add_mask(composite(LABELS, COLORS), task_id=new_cuid())
    objects = [mask_object(FIDS["sky"], "Sky", "mask", {"url": sky})] + [
        mask_object(FIDS[i], "Vehicle" if i == 3 else "Building", "composite_mask",
                    {"url": comp, "color_rgb": list(COLORS[i - 1])}) for i in (1, 2, 3)]
    s.add_model_run(MODEL, RUN, export_rows=[{
        "data_row": {"id": DATA_ROW, "global_key": "street.jpg", "row_data": "http://img/street.jpg"},
        "media_attributes": {"width": W, "height": H, "mime_type": "image/png"},
        "experiments": {MODEL: {"runs": {RUN: {"name": "run", "labels": [], "predictions": [
            {"id": new_cuid(), "annotations": {"objects": objects, "classifications": [],
                                               "relationships": []}}]}}}}}])
    yield s
    s.stop()


def model_run_export(standin, path: Path) -> Path:
    """The model run's export with predictions, as the labelbox SDK streams it."""
    task = standin.client().get_model_run(RUN).export(params={"predictions": True})
    task.wait_till_done()
    with open(path, "w") as fh:
        for out in task.get_buffered_stream():
            fh.write(json.dumps(out.json) + "\n")
    return path


def serve(tmp: Path, standin, **env: str):
    """The service on the model run itself (``LABELBOX_MODEL_RUN_ID``: exported through the SDK
    when the index is built), or on that run's export file with ``LABELBRIDGE_EXPORT``."""
    port = free_port()
    env = {**os.environ, "LABELBRIDGE_DATA_DIR": str(tmp / "var"), "LABELBRIDGE_PORT": str(port),
           "LABELBOX_MODEL_RUN_ID": RUN,
           "LABELBRIDGE_LABEL_CONFIG": str(ROOT / "configs" / "segmentation.xml"),
           "LABELBRIDGE_WEBHOOK_TOKEN": TOKEN, "LABELBOX_PROJECT_ID": PROJECT,
           "LABELBOX_ENDPOINT": standin.endpoint, "LABELBOX_REST_ENDPOINT": standin.rest_endpoint,
           "LABELBOX_APP_URL": standin.app_url, "LABELBRIDGE_BATCH_MAX_WAIT": "0.2",
           "LABELBRIDGE_IMPORT_POLL_INTERVAL": "0.1", **env}
    env = {k: v for k, v in env.items() if v}
    proc = start_process([sys.executable, "-m", "labelbridge", "serve"], env,
                         f"http://127.0.0.1:{port}/health", tmp / "service.log")
    return proc, f"http://127.0.0.1:{port}", tmp / "service.log"


def predict(url: str) -> dict:
    r = httpx.post(url + "/predict", json={"tasks": [{"id": 7, "data": {
        "image": "http://img/street.jpg", "global_key": "street.jpg"}}], "label_config": CONFIG},
        timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


def alpha(item: dict) -> np.ndarray:
    rgba = sdk.decode_rle(item["value"]["rle"]).reshape(item["original_height"],
                                                        item["original_width"], 4)
    return rgba[:, :, 3] == 255


@pytest.fixture(scope="module")
def service(tmp_path_factory, standin):
    standin.reset_calls()
    proc, url, log = serve(tmp_path_factory.mktemp("masks"), standin,
                           LABELBOX_API_KEY="test-key")
    yield url, log
    stop_process(proc)


def test_model_run_masks_are_indexed_with_the_key_and_served_as_brush_predictions(service,
                                                                                   standin):
    url, _ = service
    assert standin.calls["maskFile"] == 2    # the composite once for its three instances
    assert standin.calls["__unauthorized__"] == 0
    calls_before = standin.calls["maskFile"]
    pred = predict(url)
    brushes = [r for r in pred["result"] if r["type"] == "brushlabels"]
    assert [r["id"] for r in brushes] == [FIDS["sky"], FIDS[1], FIDS[2], FIDS[3]]
    assert [r["value"]["brushlabels"] for r in brushes] == [["Sky"], ["Building"], ["Building"],
                                                            ["Vehicle"]]
    assert np.array_equal(alpha(brushes[0]), SKY)
    for i, item in enumerate(brushes[1:], 1):
        assert np.array_equal(alpha(item), LABELS == i)
    per_region = [r for r in pred["result"] if r["type"] == "choices"]
    assert [r["id"] for r in per_region] == [r["id"] for r in brushes]
    assert standin.calls["maskFile"] == calls_before   # /predict is a lookup: no fetch


def test_the_accepted_prediction_reaches_labelbox_as_mask_lines(service, standin):
    url, log = service
    pred = predict(url)
    body = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
    body["project"]["label_config"] = CONFIG
    body["task"].update(id=7, data={"image": "http://img/street.jpg", "global_key": "street.jpg"})
    body["annotation"].update(id=70, task=7, result=pred["result"])
    r = httpx.post(url + "/webhook", json=body, headers={"X-Labelbridge-Token": TOKEN})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while not standin.imports(PROJECT) and time.monotonic() < deadline:
        time.sleep(0.2)
    (imp,) = standin.imports(PROJECT)
    assert [st["status"] for st in imp["statuses"]] == ["SUCCESS"] * 4, imp["statuses"]
    lines = imp["lines"]
    assert [line["uuid"] for line in lines] == [u5(FIDS[k]) for k in ("sky", 1, 2, 3)]
    assert [set(line["mask"]) for line in lines] == [{"png"}] * 4
    named = standin.named(PROJECT, lines)  # the bridge names features by schemaId
    assert [line["name"] for line in named] == ["Sky", "Building", "Building", "Vehicle"]
    assert all(line["classifications"] == [{"name": "visibility", "answer": {"name": "partial"}}]
               for line in named)
    assert "test-key" not in log.read_text()


def test_without_the_key_the_index_builds_and_the_masks_are_losses(tmp_path, standin):
    standin.reset_calls()
    proc, url, log = serve(tmp_path, standin, LABELBOX_API_KEY="", LABELBOX_PROJECT_ID="",
                           LABELBOX_MODEL_RUN_ID="", LABELBRIDGE_EXPORT=str(
                               model_run_export(standin, tmp_path / "export.ndjson")))
    try:
        assert standin.calls["maskFile"] == 0 and standin.calls["__unauthorized__"] == 0
        assert predict(url) == []
        text = log.read_text()
        assert "mask URLs need the Labelbox API key" in text
    finally:
        stop_process(proc)
