"""labelbox/video.py: export rows -> tracks, tracks -> NDJSON lines (checked against the SDK)."""

from __future__ import annotations

import labelbox.types as lb
from labelbox.data.serialization import NDJsonConverter

from labelbridge.labelbox.annotations import _RowReader
from labelbridge.labelbox.shapes import RowContext
from labelbridge.labelbox.video import VideoLineWriter, VideoReader, runs, video_info
from labelbridge.model.features import FeatureTable
from labelbridge.model.ids import ndjson_uuid
from labelbridge.model.regions import (Answer, Box, Classification, Keyframe, Region,
                                       VideoSegment, VideoTrack)
from labelbridge.model.report import ConversionReport

from tests.videorows import video_annotations

F1, F2 = "cfeature00000000000000001", "cfeature00000000000000002"


def read(ann):
    report = ConversionReport()
    rows = _RowReader("crow", report, RowContext())
    reader = VideoReader("crow", lambda items, path: rows.classifications(items, ("frames",),
                                                                          path),
                         report)
    regions, frame_cls = reader.read(ann)
    return regions, frame_cls, report


def frames_of(region):
    return [[(k.frame, (k.box.left, k.box.top, k.box.width, k.box.height))
             for k in s.keyframes] for s in region.shape.segments]


def test_export_of_the_sdk_streamable_test__segments_and_keyframes():
    # labelbox-python tests/integration/export/streamable/test_export_video_streamable.py
    obj = {"feature_id": "clgjnpyse000ui3zx6fr1d880", "name": "bbox",
           "annotation_kind": "VideoBoundingBox", "classifications": [],
           "bounding_box": {"top": 98.0, "left": 146.0, "height": 243.0, "width": 236.0}}
    ann = {"frames": {str(f): {"objects": {obj["feature_id"]: obj}, "classifications": []}
                      for f in (13, 18, 19)},
           "segments": {obj["feature_id"]: [[13, 13], [18, 19]]},
           "key_frame_feature_map": {obj["feature_id"]: {"13": True, "18": False, "19": True}},
           "classifications": []}
    (region,), _, report = read(ann)
    assert region.id == obj["feature_id"] and region.name == "bbox"
    box = (146.0, 98.0, 236.0, 243.0)
    # frame 18 is not a keyframe but starts a segment: kept so the segment keeps its bounds
    assert frames_of(region) == [[(13, box)], [(18, box), (19, box)]]
    assert report.lossless


def test_interpolated_export_keeps_keyframes_only():
    track = (F1, "Car", [[(1, (0, 0, 10, 10)), (5, (40, 0, 10, 10)), (9, (80, 0, 10, 10))],
                         [(20, (5, 5, 5, 5))]])
    for key_map in ("dict", "list"):
        ann = video_annotations([track], interpolated=True, key_map=key_map)
        assert len(ann["frames"]) == 10  # 1..9 and 20
        (region,), _, report = read(ann)
        assert frames_of(region) == [[(1, (0, 0, 10, 10)), (5, (40, 0, 10, 10)),
                                      (9, (80, 0, 10, 10))], [(20, (5, 5, 5, 5))]]
        assert report.lossless


def test_no_key_frame_map_every_listed_frame_is_a_keyframe():
    ann = video_annotations([(F1, "Car", [[(2, (0, 0, 1, 1)), (3, (1, 0, 1, 1))]])],
                            key_map=None)
    del ann["segments"]
    (region,), _, report = read(ann)
    assert frames_of(region) == [[(2, (0, 0, 1, 1)), (3, (1, 0, 1, 1))]]
    assert report.lossless


def test_malformed_box_and_missing_segment_edge_are_reported_with_feature_and_row():
    ann = video_annotations([(F1, "Car", [[(1, (0, 0, 1, 1)), (4, (1, 1, 1, 1))]])])
    del ann["frames"]["4"]["objects"][F1]["bounding_box"]["height"]
    ann["segments"][F1] = [[1, 6]]
    (region,), _, report = read(ann)
    assert frames_of(region) == [[(1, (0, 0, 1, 1))]]
    reasons = [str(e) for e in report.examples]
    assert any("segment 1-6 has no box on its first or last frame; kept 1-4" in r
               and "'Car'" in r and "crow" in r for r in reasons), reasons
    assert any("bounding_box.height: missing" in r for r in reasons), reasons


def test_malformed_video_parts_are_reported_not_raised():
    good = video_annotations([(F1, "Car", [[(1, (0, 0, 1, 1))]])])
    for part, bad in (("frames", []), ("segments", [1]), ("key_frame_feature_map", "x")):
        regions, _, report = read({**good, part: bad})
        assert f"{part} is not an object" in str(report.examples[0])
    bad_objects = {**good, "frames": {"1": {"objects": [1, 2]}, "x": {}}}
    regions, _, report = read(bad_objects)
    assert regions == []
    assert {str(e).split(" (")[0] for e in report.examples} == {
        "video: frame key 'x' is not a frame number >= 1",
        "video: frames.1.objects is not an object"}


def test_non_box_video_objects_are_a_reported_loss():
    ann = {"frames": {"1": {"objects": {F1: {"feature_id": F1, "name": "pt",
                                             "annotation_kind": "VideoPoint",
                                             "point": {"x": 1, "y": 2}}}}},
           "segments": {F1: [[1, 1]]}}
    regions, _, report = read(ann)
    assert regions == []
    assert "VideoPoint on video" in str(report.examples[0])


def test_frame_classifications_become_ranges_per_answer():
    def radio(answer):
        return {"feature_id": "cradio", "name": "scene", "radio_answer": {"name": answer}}
    items = [(f, radio("day")) for f in (1, 2, 3, 7, 8)] + [(f, radio("night")) for f in (10, 11)]
    _, cls, report = read(video_annotations([], items))
    assert [(c.name, c.answers[0].name, c.frames, c.id) for c in cls] == [
        ("scene", "day", ((1, 3), (7, 8)), "cradio"),
        ("scene", "night", ((10, 11),), "cradio-1")]
    assert report.lossless


def test_runs_and_video_info():
    assert runs([7, 1, 2, 3, 3]) == ((1, 3), (7, 7))
    info = video_info({"frame_rate": 29.97, "frame_count": 300})
    assert (info.frame_rate, info.frame_count) == (29.97, 300)
    assert abs(info.duration - 300 / 29.97) < 1e-12


# ----- NDJSON lines ---------------------------------------------------------------------------

def kf(frame, left, nested=()):
    return Keyframe(frame, Box(left, 2.0, 10.0, 20.0), nested)


COLOR = Classification("color", "radio", (Answer("red"),))


def writer(report=None):
    return VideoLineWriter({"globalKey": "vid.mp4"}, "vid.mp4", report or ConversionReport())


def sdk_lines(annotations):
    label = lb.Label(data=lb.GenericDataRowData(global_key="vid.mp4"), annotations=annotations)
    return list(NDJsonConverter.serialize([label]))


def test_one_track_line_equals_the_sdk_serializer():
    track = VideoTrack((VideoSegment((kf(1, 1.0), kf(3, 3.0, (COLOR,)))),
                        VideoSegment((kf(10, 10.0),))))
    region = Region(id=F1, name="car", shape=track)
    ours = writer().track_line(region)
    sdk = []
    for index, seg in enumerate(track.segments):
        for k in seg.keyframes:
            b = k.box
            sdk.append(lb.VideoObjectAnnotation(
                name="car", frame=k.frame, keyframe=True, segment_index=index,
                value=lb.Rectangle(start=lb.Point(x=b.left, y=b.top),
                                   end=lb.Point(x=b.left + b.width, y=b.top + b.height)),
                classifications=[lb.ClassificationAnnotation(
                    name="color", value=lb.Radio(answer=lb.ClassificationAnswer(name="red")))
                    for c in k.classifications],
                extra={"uuid": ndjson_uuid(F1)}))
    assert sdk_lines(sdk) == [ours]


def test_two_tracks_of_one_class_stay_two_objects():
    regions = [Region(id=fid, name="car", shape=VideoTrack((VideoSegment((kf(f, 1.0),)),)))
               for fid, f in ((F1, 1), (F2, 5))]
    lines = [writer().track_line(r) for r in regions]
    assert [line["uuid"] for line in lines] == [ndjson_uuid(F1), ndjson_uuid(F2)]
    # why the lines are written here: the SDK merges both tracks into one object
    merged = sdk_lines([lb.VideoObjectAnnotation(
        name="car", frame=r.shape.segments[0].start, keyframe=True,
        value=lb.Rectangle(start=lb.Point(x=1, y=2), end=lb.Point(x=11, y=22)),
        extra={"uuid": ndjson_uuid(r.id)}) for r in regions])
    assert len(merged) == 1


def test_rotated_keyframe_is_sent_as_enclosing_box_and_reported():
    report = ConversionReport()
    track = VideoTrack((VideoSegment((Keyframe(1, Box(0, 0, 10, 10, 90.0)),)),))
    line = writer(report).track_line(Region(id=F1, name="car", shape=track))
    bbox = line["segments"][0]["keyframes"][0]["bbox"]
    assert abs(bbox["left"] + 10) < 1e-9 and abs(bbox["width"] - 10) < 1e-9
    assert "rotation dropped" in str(report.examples[0])


def test_frame_classification_lines():
    day = Classification("scene", "radio", (Answer("day"),), id="r1", frames=((1, 3), (7, 8)))
    night = Classification("scene", "radio", (Answer("night"),), id="r2", frames=((9, 9),))
    flags = Classification("flags", "checklist", (Answer("x"), Answer("y")), id="c1",
                           frames=((2, 4),))
    t1 = Classification("desc", "text", text="x", frames=((1, 3),))
    t2 = Classification("desc", "text", text="y", frames=((7, 8),))
    lines = writer().classification_lines([day, night, flags, t1, t2])
    gk = {"globalKey": "vid.mp4"}
    assert lines == [
        {"frames": [{"start": 1, "end": 3}, {"start": 7, "end": 8}], "name": "scene",
         "answer": {"name": "day"}, "dataRow": gk, "uuid": ndjson_uuid("r1")},
        {"frames": [{"start": 9, "end": 9}], "name": "scene", "answer": {"name": "night"},
         "dataRow": gk, "uuid": ndjson_uuid("r2")},
        {"frames": [{"start": 2, "end": 4}], "name": "flags",
         "answer": [{"name": "x"}, {"name": "y"}], "dataRow": gk, "uuid": ndjson_uuid("c1")},
        {"name": "desc", "answer": [{"value": "x", "frames": [{"start": 1, "end": 3}]},
                                    {"value": "y", "frames": [{"start": 7, "end": 8}]}],
         "dataRow": gk}]
    # the SDK writes the same shape for one answer (and keeps only the first of several)
    sdk = sdk_lines([lb.VideoClassificationAnnotation(
        name="scene", frame=f, segment_index=i,
        value=lb.Radio(answer=lb.ClassificationAnswer(name="day")),
        extra={"uuid": ndjson_uuid("r1")}) for i, (s, e) in enumerate(day.frames)
        for f in range(s, e + 1)])
    assert sdk == [lines[0]]
    sdk_text = sdk_lines([lb.VideoClassificationAnnotation(
        name="desc", frame=f, segment_index=i, value=lb.Text(answer=t.text))
        for i, t in enumerate((t1, t2)) for s, e in t.frames for f in range(s, e + 1)])
    assert sdk_text == [lines[3]]


def ids(n: int) -> str:
    return f"csch{n:021d}"


def test_video_lines_name_features_by_schema_id_as_the_sdk_does():
    """The ontology's schema ids (``FeatureTable``), found by the case-insensitive name: the
    same keys as the SDK writes for ``feature_schema_id``."""
    features = FeatureTable()
    for n, path in enumerate([("object", "Car"), ("object", "Car", "color"),
                              ("object", "Car", "color", "red"),
                              ("classification", "scene"), ("classification", "scene", "day")]):
        features.add(path, path[-1], ids(n))
    w = VideoLineWriter({"globalKey": "vid.mp4"}, "vid.mp4", ConversionReport(), features)
    track = VideoTrack((VideoSegment((kf(1, 1.0, (COLOR,)), kf(3, 3.0, (COLOR,)))),))
    ours = w.track_line(Region(id=F1, name="car", shape=track))
    sdk = sdk_lines([lb.VideoObjectAnnotation(
        feature_schema_id=ids(0), frame=k.frame, keyframe=True, segment_index=0,
        value=lb.Rectangle(start=lb.Point(x=k.box.left, y=k.box.top),
                           end=lb.Point(x=k.box.left + k.box.width, y=k.box.top + k.box.height)),
        classifications=[lb.ClassificationAnnotation(
            feature_schema_id=ids(1),
            value=lb.Radio(answer=lb.ClassificationAnswer(feature_schema_id=ids(2))))],
        extra={"uuid": ndjson_uuid(F1)}) for k in track.segments[0].keyframes])
    assert sdk == [ours] and "name" not in ours
    day = Classification("Scene", "radio", (Answer("DAY"),), id="r1", frames=((1, 3),))
    unknown = Classification("mood", "radio", (Answer("calm"),), id="r2", frames=((1, 1),))
    scene, mood = w.classification_lines([day, unknown])
    assert (scene["schemaId"], scene["answer"]) == (ids(3), {"schemaId": ids(4)})
    assert (mood["name"], mood["answer"]) == ("mood", {"name": "calm"})   # not in the table
