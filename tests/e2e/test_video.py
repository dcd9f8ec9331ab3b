"""Video against a real Label Studio 1.23.2: a video task gets the Labelbox prediction with the
feature ids as region ids, and "create annotations from predictions" delivers one Labelbox
video object per track to the stand-in, with the uuid5 of those ids and the export's keyframes.
"""

from __future__ import annotations

import orjson
import pytest
from label_studio_sdk.label_interface import LabelInterface

from tests.e2e.test_bridge import Bridge, annotations, dm_action, predictions, u5
from tests.helpers import DEMO_EXPORT, ROOT, wait_for
from tests.lbstandin import Feature, LabelboxStandIn, new_cuid

CONFIG = (ROOT / "configs" / "video-tracking.xml").read_text(encoding="utf-8")
VPROJECT = new_cuid()
ONTOLOGY = [Feature(name, "bbox", nested=[Feature("occluded", "radio", options=["yes", "no"])])
            for name in ("Car", "Person")] + [Feature("daytime", "radio", options=["day", "night"])]
ROW = next(r for line in DEMO_EXPORT.read_bytes().splitlines()
           if (r := orjson.loads(line))["data_row"]["global_key"] == "demo-video-1.mp4")
RUN = next(iter(next(iter(ROW["experiments"].values()))["runs"]))
ANN = next(iter(next(iter(ROW["experiments"].values()))["runs"].values()))["predictions"][0][
    "annotations"]
URL = ROW["data_row"]["row_data"]


@pytest.fixture(scope="module")
def video_world(label_studio, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("video")
    standin = LabelboxStandIn(api_key="lb-key").start()
    standin.add_project(VPROJECT, name="video", media_type="VIDEO", ontology=ONTOLOGY)
    standin.add_data_rows(VPROJECT, [{"id": ROW["data_row"]["id"], "global_key": "demo-video-1.mp4",
                                      "row_data": URL, "media_attributes": ROW["media_attributes"]}])
    bridge = Bridge(tmp, standin, label_studio)
    (tmp / "video.ndjson").write_bytes(orjson.dumps(ROW) + b"\n")
    bridge.env.update(LABELBRIDGE_EXPORT=str(tmp / "video.ndjson"), LABELBOX_PROJECT_ID=VPROJECT)
    bridge.start()
    yield label_studio, standin, bridge
    bridge.stop()
    standin.stop()


def test_video_prediction_becomes_labelbox_tracks(video_world, ls_project):
    ls, standin, bridge = video_world
    project = ls_project(CONFIG)
    (task_id,) = ls.client().projects.import_tasks(
        id=project.id, return_task_ids=True, request=[{"data": {"video": URL}}]).task_ids
    r = bridge.cli("connect", "--ls-url", ls.url, "--ls-token", ls.token, "--ls-project",
                   str(project.id), "--backend-url", bridge.url)
    assert r.returncode == 0, r.stderr

    dm_action(ls, "retrieve_tasks_predictions", project.id)
    (pred,) = predictions(ls, task_id)
    assert pred["model_version"] == RUN
    assert LabelInterface(CONFIG).validate_prediction({"result": pred["result"]},
                                                      return_errors=True) == []
    boxes = [r for r in pred["result"] if r["type"] == "videorectangle"]
    assert [b["id"] for b in boxes] == list(ANN["segments"])     # the Labelbox feature ids
    assert [s["frame"] for s in boxes[0]["value"]["sequence"]] == [1, 12, 24, 36, 50]

    dm_action(ls, "predictions_to_annotations", project.id, model_version=RUN)
    (ann,) = annotations(ls, task_id)
    assert [r.get("id") for r in ann["result"]] == [r.get("id") for r in pred["result"]]
    (label,) = wait_for(lambda: [lab for lab in standin.labels(VPROJECT)
                                 if lab["global_key"] == "demo-video-1.mp4"], what="video label")
    tracks = {line["uuid"]: line for line in label["annotations"] if "segments" in line}
    assert set(tracks) == {u5(fid) for fid in ANN["segments"]}
    for fid, spans in ANN["segments"].items():
        got = [[k["frame"] for k in s["keyframes"]] for s in tracks[u5(fid)]["segments"]]
        assert got == [[int(f) for f in ANN["key_frame_feature_map"][fid] if s <= int(f) <= e]
                       for s, e in spans]
