"""The stand-in checks video NDJSON lines strictly; the lines labelbridge writes pass, through
the real SDK's LabelImport."""

from __future__ import annotations

import uuid

import labelbox as lb
import pytest

from labelbridge.labelbox.video import VideoLineWriter
from labelbridge.model.regions import (Answer, Box, Classification, Keyframe, Region,
                                       VideoSegment, VideoTrack)
from labelbridge.model.report import ConversionReport

from tests.lbstandin import Feature, LabelboxStandIn

PID = "cprojvideo000000000000001"
DR = "cdrvideo00000000000000001"
GK = "vid-1.mp4"
ONTOLOGY = [
    Feature("car", "bbox", nested=[Feature("occluded", "radio", options=["yes", "no"])]),
    Feature("eye", "point"),
    Feature("scene", "radio", options=["day", "night"]),
    Feature("flags", "checklist", options=["x", "y"]),
    Feature("desc", "text"),
]


@pytest.fixture(scope="module")
def client():
    stand = LabelboxStandIn(api_key="test-key")
    stand.add_project(PID, name="video", media_type="VIDEO", ontology=ONTOLOGY)
    stand.add_data_rows(PID, [{"id": DR, "global_key": GK, "row_data": "http://x/vid-1.mp4",
                               "external_id": None,
                               "media_attributes": {"width": 1280, "height": 720}}])
    stand.start()
    yield stand.client()
    stand.stop()


def statuses(client, lines):
    imp = lb.LabelImport.create_from_objects(client, PID, f"imp-{uuid.uuid4()}", lines)
    imp.wait_till_done(sleep_time_seconds=0.05)
    return imp.statuses


def kf(frame, nested=()):
    return Keyframe(frame, Box(10.0 + frame, 20.0, 30.0, 40.0), nested)


def test_the_lines_labelbridge_writes_are_accepted(client):
    occluded = (Classification("occluded", "radio", (Answer("yes"),)),)
    tracks = [Region(id=f"track{i}", name="car", shape=VideoTrack((
        VideoSegment((kf(1, occluded), kf(5, occluded))), VideoSegment((kf(9 + i),)))))
        for i in range(3)]  # three tracks of one class
    frame_cls = [Classification("scene", "radio", (Answer("day"),), id="s1",
                                frames=((1, 4), (8, 9))),
                 Classification("scene", "radio", (Answer("night"),), id="s2", frames=((5, 7),)),
                 Classification("flags", "checklist", (Answer("x"), Answer("y")), id="f1",
                                frames=((2, 2),)),
                 Classification("desc", "text", text="a", frames=((1, 3),)),
                 Classification("desc", "text", text="b", frames=((4, 4),))]
    report = ConversionReport()
    writer = VideoLineWriter({"globalKey": GK}, GK, report)
    lines = [writer.track_line(r) for r in tracks] + writer.classification_lines(frame_cls)
    assert report.lossless and len(lines) == 7
    assert [s["status"] for s in statuses(client, lines)] == ["SUCCESS"] * 7


def seg_line(segments, name="car", **extra):
    return {"uuid": str(uuid.uuid4()), "dataRow": {"globalKey": GK}, "name": name,
            "segments": segments, **extra}


def frame(n, **extra):
    return {"frame": n, "bbox": {"top": 1.0, "left": 1.0, "height": 5.0, "width": 5.0}, **extra}


def cls_line(name, answer, **extra):
    return {"uuid": str(uuid.uuid4()), "dataRow": {"globalKey": GK}, "name": name,
            "answer": answer, **extra}


GOOD = [
    ("notebook per-answer frames", cls_line("scene", {"name": "day", "frames": [
        {"start": 9, "end": 15}]})),
    ("notebook checklist frames", cls_line("flags", [{"name": "x", "frames": [{"start": 1, "end": 2}]},
                                                     {"name": "y", "frames": [{"start": 1, "end": 2}]}])),
    ("point keyframes", seg_line([{"keyframes": [{"frame": 17, "point": {"x": 1.0, "y": 2.0}}]}],
                                 name="eye")),
]
BAD = [
    ("keyframes out of order", seg_line([{"keyframes": [frame(5), frame(3)]}]), "after frame 5"),
    ("segments overlap", seg_line([{"keyframes": [frame(1), frame(5)]}, {"keyframes": [frame(4)]}]),
     "after frame 5"),
    ("frame 0", seg_line([{"keyframes": [frame(0)]}]), "must be >= 1"),
    ("empty segment", seg_line([{"keyframes": []}]), "non-empty"),
    ("no segments", seg_line([]), "non-empty"),
    ("bad keyframe box", seg_line([{"keyframes": [{"frame": 1, "bbox": {"top": 1}}]}]), "bbox"),
    ("point keyframe on a bbox tool", seg_line([{"keyframes": [{"frame": 1, "point": {"x": 1, "y": 1}}]}]),
     "'point' keyframe"),
    ("segments on a classification", seg_line([{"keyframes": [frame(1)]}], name="scene"),
     "segments need a bbox"),
    ("unknown nested class on a keyframe",
     seg_line([{"keyframes": [frame(1, classifications=[{"name": "colour", "answer": {"name": "r"}}])]}]),
     "colour"),
    ("confidence on a video object", seg_line([{"keyframes": [frame(1)]}], confidence=0.5),
     "no confidence"),
    ("segments with a bbox", seg_line([{"keyframes": [frame(1)]}], bbox={"top": 1, "left": 1,
                                                                         "height": 1, "width": 1}),
     "no other geometry"),
    ("frames start > end", cls_line("scene", {"name": "day"}, frames=[{"start": 4, "end": 2}]),
     "start <= end"),
    ("frames overlap", cls_line("scene", {"name": "day"}, frames=[{"start": 1, "end": 4},
                                                                  {"start": 3, "end": 5}]), "overlaps"),
    ("frames on text", cls_line("desc", "x", frames=[{"start": 1, "end": 1}]), "radio or checklist"),
    ("video text without frames", cls_line("desc", [{"value": "x"}]), "value: str, frames"),
    ("frames unknown answer", cls_line("scene", {"name": "dusk"}, frames=[{"start": 1, "end": 1}]),
     "dusk"),
]


@pytest.mark.parametrize("line", [c[1] for c in GOOD], ids=[c[0] for c in GOOD])
def test_documented_shapes_are_accepted(client, line):
    (status,) = statuses(client, [line])
    assert status["status"] == "SUCCESS", status


@pytest.mark.parametrize("line,fragment", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_malformed_video_lines_are_refused(client, line, fragment):
    (status,) = statuses(client, [line])
    assert status["status"] == "FAILURE"
    assert fragment in status["errors"][0]["message"], status["errors"]
