"""Labelbox export-v2 rows -> neutral regions."""

import gzip

import orjson
import pytest

from labelbridge.labelbox.export import (ExportError, Selection, compact_row, iter_rows, parse_line,
                                         task_regions)
from labelbridge.labelbox.masks import MaskSource, resolve_row
from labelbridge.model.regions import Box, KeyPoint, Polygon, Polyline, Span
from labelbridge.model.report import ConversionReport

from tests.helpers import (DATA_ROW, DEMO_EXPORT, FIXTURES, RUN, bbox, checklist, export_row,
                           radio, text)

EVERY_KIND = FIXTURES / "labelbox-every-kind.ndjson"


def regions_of(row, sel=Selection(), report=None):
    picked = compact_row(row, sel)
    assert picked is not None
    return task_regions(picked[1], report if report is not None else ConversionReport())


def test_bounding_box_is_pixels_left_top_width_height():
    tr = regions_of(export_row([bbox("cfeat1", "Car", 10.5, 20.25, 30, 40, confidence=0.8)]))
    (r,) = tr.regions
    assert r.id == "cfeat1" and r.name == "Car" and r.score == 0.8
    assert r.shape == Box(10.5, 20.25, 30.0, 40.0)
    assert (tr.width, tr.height) == (640, 480)
    assert tr.data_row.id == DATA_ROW and tr.data_row.global_key == "img-1.jpg"


def test_polygon_drops_the_repeated_closing_point_only():
    closed = {"feature_id": "cp", "name": "road", "annotation_kind": "ImagePolygon",
              "polygon": [{"x": 1, "y": 2}, {"x": 5, "y": 2}, {"x": 3, "y": 9}, {"x": 1, "y": 2}]}
    open_ = dict(closed, feature_id="cq", polygon=closed["polygon"][:3])
    tr = regions_of(export_row([closed, open_]))
    assert [r.shape for r in tr.regions] == [Polygon(((1, 2), (5, 2), (3, 9)))] * 2


def test_point_and_polyline():
    tr = regions_of(export_row([
        {"feature_id": "c1", "name": "nose", "annotation_kind": "ImagePoint",
         "point": {"x": 3.5, "y": 4}},
        {"feature_id": "c2", "name": "lane", "annotation_kind": "ImagePolyline",
         "line": [{"x": 0, "y": 0}, {"x": 10, "y": 5}, {"x": 20, "y": 5}]}]))
    assert tr.regions[0].shape == KeyPoint(3.5, 4.0)
    assert tr.regions[1].shape == Polyline(((0, 0), (10, 5), (20, 5)))


def test_ner_inclusive_end_becomes_exclusive():
    # "research suggests" is 17 characters at 112..128 inclusive (the SDK's own test data)
    obj = {"feature_id": "cn", "name": "PER", "annotation_kind": "TextEntity",
           "location": {"start": 112, "end": 128, "token": "research suggests"}}
    (r,) = regions_of(export_row([obj], width=None)).regions
    assert r.shape == Span(112, 129, "research suggests")
    assert r.shape.end - r.shape.start == len("research suggests")


def test_single_character_entity():
    obj = {"feature_id": "cn", "name": "PER", "location": {"start": 0, "end": 0, "token": "I"}}
    (r,) = regions_of(export_row([obj], width=None)).regions
    assert (r.shape.start, r.shape.end) == (0, 1)


def test_nested_classifications_to_depth_three():
    deep = radio("cq1", "occluded", "yes", [
        checklist("cq2", "attributes", ["parked", "blurred"],
                  {"blurred": [radio("cq3", "cause", "motion")]})])
    tr = regions_of(export_row([bbox("cb", "Car", 0, 0, 1, 1, classifications=[deep])]))
    (occluded,) = tr.regions[0].classifications
    assert occluded.kind == "radio" and occluded.answers[0].name == "yes"
    (attributes,) = occluded.answers[0].classifications
    assert attributes.kind == "checklist"
    assert [a.name for a in attributes.answers] == ["parked", "blurred"]
    (cause,) = attributes.answers[1].classifications
    assert (cause.name, cause.answers[0].name) == ("cause", "motion")


def test_global_classifications_radio_checklist_text():
    tr = regions_of(export_row(classifications=[
        radio("cw", "weather", "rainy", [radio("ci", "rain_intensity", "heavy")]),
        checklist("ct", "tags", ["a", "b"]), text("cc", "caption", "hello")]))
    weather, tags, caption = tr.classifications
    assert weather.id == "cw" and weather.answers[0].classifications[0].id == "ci"
    assert [a.name for a in tags.answers] == ["a", "b"]
    assert (caption.kind, caption.text) == ("text", "hello")


def test_answers_repeated_across_rows_keep_their_own_score_and_schema_id():
    # a plain answer ("yes" with nothing nested) is shared between rows: what differs must not be
    plain = radio("c1", "occluded", "yes")
    scored = radio("c2", "occluded", "yes")
    scored["radio_answer"]["confidence"] = 0.25
    with_schema = radio("c3", "occluded", "yes")
    with_schema["radio_answer"]["feature_schema_id"] = "cschema1"
    nested = radio("c4", "occluded", "yes", [radio("c5", "cause", "motion")])
    answers = [regions_of(export_row(classifications=[c])).classifications[0].answers[0]
               for c in (plain, scored, with_schema, nested, plain)]
    assert [(a.name, a.score, a.schema_id, len(a.classifications)) for a in answers] == [
        ("yes", None, None, 0), ("yes", 0.25, None, 0), ("yes", None, "cschema1", 0),
        ("yes", None, None, 1), ("yes", None, None, 0)]


def test_relationship_ids_resolve_and_direction():
    rels = [{"feature_id": "cr1", "name": "drives", "unidirectional": True, "source": "ca",
             "target": "cb"},
            {"feature_id": "cr2", "name": "next_to", "unidirectional": False,
             "source": {"feature_id": "cb"}, "target": {"feature_id": "ca"}},
            {"name": "dangling", "source": "ca", "target": "cmissing"}]
    report = ConversionReport()
    tr = regions_of(export_row([bbox("ca", "Car", 0, 0, 1, 1), bbox("cb", "Person", 1, 1, 1, 1)],
                               relationships=rels), report=report)
    assert [(r.source, r.target, r.name, r.bidirectional) for r in tr.relations] == [
        ("ca", "cb", "drives", False), ("cb", "ca", "next_to", True)]
    assert report.skipped[("relationship", "relationships[].target: the related object was not "
                           "converted or is not in this label")] == 1
    (loss,) = report.examples
    assert (loss.data_row, loss.field, loss.detail) == (DATA_ROW, "relationships[2].target",
                                                        "cmissing")


def test_masks_and_video_without_boxes_are_counted_and_reported_not_silently_dropped(caplog):
    mask = {"feature_id": "cm", "name": "seg", "annotation_kind": "ImageSegmentationMask",
            "mask": {"url": "https://x"}}
    report = ConversionReport()
    tr = regions_of(export_row([mask, bbox("cb", "Car", 0, 0, 1, 1)]), report=report)
    assert len(tr.regions) == 1
    (loss,) = report.examples  # read only through the index or the converter (masks.py)
    assert (loss.kind, loss.field, loss.region) == ("mask", "objects[0].mask", "cm")
    assert "mask was not fetched" in loss.reason and "mask was not fetched" in caplog.text
    video = export_row()
    video["experiments"][next(iter(video["experiments"]))]["runs"][RUN]["predictions"][0][
        "annotations"] = {"frames": {"1": {"objects": {"cv": {"name": "Car"}}}}, "segments": {}}
    regions_of(video, report=report)  # a video object without a box (tests/unit/test_video_*)
    assert report.skipped[("video", "object on video: Label Studio tracks only boxes "
                                    "(VideoRectangle)")] == 1


def test_ids_are_stable_without_feature_ids():
    row = export_row([{"name": "Car", "bounding_box": {"left": 0, "top": 0, "width": 1,
                                                       "height": 1}}],
                     [{"name": "weather", "radio_answer": {"name": "x"}}])
    first, second = regions_of(row), regions_of(orjson.loads(orjson.dumps(row)))
    assert first.regions[0].id == second.regions[0].id
    assert first.classifications[0].id == second.classifications[0].id
    assert "#" not in first.regions[0].id


def test_selection_of_run_and_labels():
    pred = [bbox("cp", "Car", 0, 0, 1, 1)]
    row = export_row(pred)
    run = row["experiments"][next(iter(row["experiments"]))]["runs"][RUN]
    run["labels"] = [{"annotations": {"objects": [bbox("cl", "Person", 0, 0, 2, 2)]}}]
    assert regions_of(row).regions[0].id == "cp"
    assert regions_of(row, Selection("run_labels")).regions[0].id == "cl"
    assert compact_row(row, Selection(model_run_id="cother")) is None


def test_several_runs_need_a_choice():
    runs = {"crunA": {"predictions": [{"annotations": {}}]},
            "crunB": {"predictions": [{"annotations": {}}]}}
    row = export_row(runs=runs)
    with pytest.raises(ExportError, match="LABELBOX_MODEL_RUN_ID"):
        compact_row(row, Selection())
    assert compact_row(row, Selection(model_run_id="crunB"))[0] == "crunB"


def test_project_labels_pick_the_newest_label():
    row = export_row()
    row["projects"] = {"cproj": {"labels": [
        {"label_details": {"updated_at": "2024-01-02T00:00:00Z"},
         "annotations": {"objects": [bbox("cnew", "Car", 0, 0, 1, 1)]}},
        {"label_details": {"updated_at": "2023-01-01T00:00:00Z"},
         "annotations": {"objects": [bbox("cold", "Car", 0, 0, 1, 1)]}}]}}
    assert regions_of(row, Selection("project_labels")).regions[0].id == "cnew"


def test_reads_gzip_and_directories(tmp_path):
    line = orjson.dumps(export_row([bbox("cb", "Car", 0, 0, 1, 1)])) + b"\n"
    (tmp_path / "a.ndjson").write_bytes(line)
    (tmp_path / "b.ndjson.gz").write_bytes(gzip.compress(line + b"\n" + line))
    (tmp_path / "notes.txt").write_text("ignored")
    assert len(list(iter_rows(tmp_path))) == 3


def test_bad_lines_name_file_and_line(tmp_path):
    f = tmp_path / "x.ndjson"
    f.write_bytes(orjson.dumps(export_row()) + b"\n{not json\n")
    with pytest.raises(ExportError, match=r"x.ndjson:2: not valid JSON"):
        list(iter_rows(f))
    with pytest.raises(ExportError, match="no 'data_row'"):
        parse_line(b'{"a": 1}', "y", 1)


def test_every_kind_fixture_exercises_every_kind():
    report = ConversionReport()
    kinds = set()
    for row in iter_rows(EVERY_KIND):
        picked = compact_row(row, Selection())
        tr = task_regions(picked[1], report)
        kinds |= {r.shape.kind for r in tr.regions}
        kinds |= {c.kind for c in tr.classifications}
        kinds |= {"relationship"} if tr.relations else set()
    assert kinds >= {"bbox", "polygon", "point", "polyline", "span", "radio", "checklist",
                     "text", "relationship", "videobox"}
    assert {k for k, _ in report.skipped} == {"mask"}  # masks: read by the index only


def test_demo_export_masks_are_read_offline_from_beside_it():
    report, masks = ConversionReport(), []
    for row in iter_rows(DEMO_EXPORT):
        picked = compact_row(row, Selection())
        resolve_row(picked[1], MaskSource(), DEMO_EXPORT.parent)
        masks += [r.name for r in task_regions(picked[1], report).regions
                  if r.shape.kind == "mask"]
    assert masks == ["Sky", "Building", "Building", "Vehicle"]  # single + 3 of one composite
    # street 2's mask is a Labelbox URL: without LABELBOX_API_KEY a loss, never a fetch
    assert [("need the Labelbox API key" in e.reason, e.feature) for e in report.examples] == [
        (True, "vegetation")]


def demo_video_annotations() -> tuple[dict, dict]:
    row = next(r for line in DEMO_EXPORT.read_bytes().splitlines()
               if (r := orjson.loads(line))["data_row"]["global_key"] == "demo-video-1.mp4")
    ann = next(iter(next(iter(row["experiments"].values()))["runs"].values()))["predictions"][0][
        "annotations"]
    return row, ann


def split_by_feature(ann: dict, groups: list[set[str]]) -> list[dict]:
    """``ann`` as several predictions, each holding the features of one group."""
    parts = []
    for fids in groups:
        frames = {k: {"objects": {f: o for f, o in v["objects"].items() if f in fids},
                      "classifications": []} for k, v in ann["frames"].items()}
        parts.append({"frames": {k: v for k, v in frames.items() if v["objects"]},
                      "segments": {f: s for f, s in ann["segments"].items() if f in fids},
                      "key_frame_feature_map": {f: m for f, m in
                                                ann["key_frame_feature_map"].items() if f in fids}})
    return parts


def with_predictions(row: dict, predictions: list[dict]) -> dict:
    row = orjson.loads(orjson.dumps(row))
    (model,) = row["experiments"].values()
    (run,) = model["runs"].values()
    run["predictions"] = [{"annotations": a} for a in predictions]
    return row


def test_several_video_predictions_of_a_row_are_one_label_with_every_track():
    row, ann = demo_video_annotations()
    one = regions_of(row)
    fids = list(ann["segments"])
    parts = split_by_feature(ann, [{fids[0]}, set(fids[1:])])
    parts[1]["frames"]["1"] = {"objects": {}, "classifications": [
        radio("cscene0000000000000000001", "daytime", "day")]}
    report = ConversionReport()
    merged = regions_of(with_predictions(row, parts), report=report)
    assert [r.id for r in merged.regions] == [r.id for r in one.regions] == fids
    assert merged.regions == one.regions                 # the same tracks, keyframe for keyframe
    assert [c.name for c in merged.classifications] == ["daytime"]
    assert report.lost == 0


def test_a_feature_in_two_video_predictions_keeps_the_first_and_says_so():
    row, ann = demo_video_annotations()
    fids = list(ann["segments"])
    first, second = split_by_feature(ann, [{fids[0]}, {fids[0], fids[1]}])
    second["frames"]["1"]["objects"][fids[0]]["bounding_box"]["left"] = 5
    report = ConversionReport()
    merged = regions_of(with_predictions(row, [first, second]), report=report)
    assert [r.id for r in merged.regions] == fids[:2]
    assert merged.regions[0] == regions_of(with_predictions(row, [first])).regions[0]
    (loss,) = report.examples
    assert (loss.kind, loss.feature, loss.data_row) == ("video", "Car", row["data_row"]["id"])
    assert f"feature {fids[0]} is in more than one prediction" in loss.reason
