"""Video through the running service: an export with a video row is indexed and served by
/predict (one videorectangle region per Labelbox feature, region id = feature id); the same
regions posted back as an annotation (what "create annotations from predictions" sends) are
delivered to the Labelbox stand-in, through the real SDK, as one object per track with the
uuid5 of the feature id and the export's keyframes."""

from __future__ import annotations

import copy
import json

import httpx
import orjson
import pytest
from label_studio_sdk.label_interface import LabelInterface

from tests.helpers import DEMO_EXPORT, ROOT, capture
from tests.integration.lbservice import TOKEN, Service, u5
from tests.lbstandin import Feature, LabelboxStandIn

PROJECT = "cprojvideoflow00000000001"
CONFIG = (ROOT / "configs" / "video-tracking.xml").read_text(encoding="utf-8")
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
ONTOLOGY = [Feature(name, "bbox", nested=[Feature("occluded", "radio", options=["yes", "no"])])
            for name in ("Car", "Person")] + [Feature("daytime", "radio", options=["day", "night"])]


def demo_video_row() -> dict:
    return next(r for line in DEMO_EXPORT.read_bytes().splitlines()
                if (r := orjson.loads(line))["data_row"]["global_key"] == "demo-video-1.mp4")


ROW = demo_video_row()
ANN = next(iter(next(iter(ROW["experiments"].values()))["runs"].values()))["predictions"][0][
    "annotations"]


@pytest.fixture()
def service(tmp_path):
    standin = LabelboxStandIn(api_key="test-key").start()
    standin.add_project(PROJECT, name="video", media_type="VIDEO", ontology=ONTOLOGY)
    dr = ROW["data_row"]
    standin.add_data_rows(PROJECT, [{"id": dr["id"], "global_key": dr["global_key"],
                                     "row_data": dr["row_data"],
                                     "media_attributes": ROW["media_attributes"]}])
    (tmp_path / "export.ndjson").write_bytes(orjson.dumps(ROW) + b"\n")
    svc = Service(tmp_path, standin, LABELBOX_PROJECT_ID=PROJECT,
                  LABELBRIDGE_EXPORT=str(tmp_path / "export.ndjson"))
    svc.start()
    yield svc, standin
    svc.stop()
    standin.stop()


def predict(svc) -> list[dict]:
    body = {"tasks": [{"id": 41, "data": {"video": ROW["data_row"]["row_data"]}}],
            "label_config": CONFIG, "project": "7.1700000000", "params": {}}
    r = httpx.post(svc.url + "/predict", json=body)
    assert r.status_code == 200, r.text
    (prediction,) = r.json()["results"]
    return prediction["result"]


def post_annotation(svc, ann_id: int, result: list[dict]) -> None:
    body = copy.deepcopy(CREATED)
    body["project"]["label_config"] = CONFIG
    body["task"].update(id=41, data={"video": ROW["data_row"]["row_data"]})
    body["annotation"].update(id=ann_id, task=41, result=json.loads(json.dumps(result)),
                              parent_prediction=1)
    r = httpx.post(svc.url + "/webhook", json=body, headers={"X-Labelbridge-Token": TOKEN})
    assert r.status_code == 200, r.text


def test_video_prediction_then_annotation_reaches_labelbox(service):
    svc, standin = service
    result = predict(svc)
    assert LabelInterface(CONFIG).validate_prediction({"result": result},
                                                      return_errors=True) == []
    boxes = [r for r in result if r["type"] == "videorectangle"]
    assert [b["id"] for b in boxes] == list(ANN["segments"])      # region id = feature id
    car = boxes[0]["value"]
    assert car["labels"] == ["Car"] and car["framesCount"] == 50
    assert [(s["frame"], s["enabled"]) for s in car["sequence"]] == [
        (1, True), (12, True), (24, False), (36, True), (50, False)]
    assert car["sequence"][1]["time"] == 12 / 25

    post_annotation(svc, 501, result)  # what "create annotations from predictions" makes
    svc.wait_delivered(1)

    (imp,) = standin.imports(PROJECT)
    assert all(s["status"] == "SUCCESS" for s in imp["statuses"]), imp["statuses"]
    objects = {line["uuid"]: line for line in imp["lines"] if "segments" in line}
    assert set(objects) == {u5(fid) for fid in ANN["segments"]}   # two Car tracks stay two
    for fid, spans in ANN["segments"].items():
        sent = objects[u5(fid)]   # features by schemaId, as every other ground truth line
        assert "schemaId" in sent and "name" not in sent
        assert all("schemaId" in c and "name" not in c and set(c["answer"]) == {"schemaId"}
                   for seg in sent["segments"] for k in seg["keyframes"]
                   for c in k["classifications"])
        line = standin.named(PROJECT, sent)
        assert line["name"] == next(f["objects"][fid]["name"] for f in ANN["frames"].values()
                                    if fid in f["objects"])
        frames = [[k["frame"] for k in s["keyframes"]] for s in line["segments"]]
        want = [[int(f) for f in ANN["key_frame_feature_map"][fid] if s <= int(f) <= e]
                for s, e in spans]
        assert frames == want
        for seg in line["segments"]:
            for k in seg["keyframes"]:
                exported = ANN["frames"][str(k["frame"])]["objects"][fid]
                for key, value in exported["bounding_box"].items():
                    assert abs(k["bbox"][key] - value) < 1e-6
                occluded = exported["classifications"][0]["radio_answer"]["name"]
                assert k["classifications"] == [{"name": "occluded",
                                                 "answer": {"name": occluded}}]
    (daytime,) = [line for line in standin.named(PROJECT, imp["lines"])
                  if line.get("name") == "daytime"]
    assert daytime["answer"] == {"name": "day"}
    assert [l["global_key"] for l in standin.labels(PROJECT)] == ["demo-video-1.mp4"]


def test_an_editor_made_video_annotation_gets_its_pixel_size_from_the_index(service):
    """The editor writes no original_width/height on video results."""
    svc, standin = service
    result = predict(svc)
    for item in result:
        item.pop("original_width", None)
        item.pop("original_height", None)
    post_annotation(svc, 502, result)
    svc.wait_delivered(1)
    (imp,) = standin.imports(PROJECT)
    fid = next(iter(ANN["segments"]))
    line = next(line for line in imp["lines"] if line["uuid"] == u5(fid))
    first = line["segments"][0]["keyframes"][0]
    assert first["frame"] == 1
    assert first["bbox"] == pytest.approx(ANN["frames"]["1"]["objects"][fid]["bounding_box"])
