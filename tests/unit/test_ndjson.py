"""Neutral regions -> NDJSON, compared with what NDJsonConverter gives for hand-built types."""

import uuid

import labelbox.types as lb
import pytest
from labelbox.data.serialization import NDJsonConverter

from labelbridge.labelbox.ndjson import DataRowMissing, rotated_corners, to_ndjson
from labelbridge.model.ids import LABELBRIDGE_NAMESPACE, ndjson_uuid, relation_uuid
from labelbridge.model.regions import (Answer, Box, Classification, DataRowRef, KeyPoint, Polygon,
                                       Polyline, Region, Relation, Span, TaskRegions)
from labelbridge.model.report import ConversionReport

GK = DataRowRef(global_key="img-001.jpg")
U = {rid: str(uuid.uuid5(LABELBRIDGE_NAMESPACE, rid)) for rid in ("r1", "r2", "g1")}


def expected(*annotations, data=None):
    label = lb.Label(data=data or lb.GenericDataRowData(global_key="img-001.jpg"),
                     annotations=list(annotations))
    return list(NDJsonConverter.serialize([label]))


def test_uuid_is_uuid5_of_the_region_id():
    assert ndjson_uuid("r1") == U["r1"]
    assert ndjson_uuid("r1#ann12") == U["r1"]  # the editor's internal suffix is not part of it
    assert uuid.UUID(ndjson_uuid("lbBox000001")).version == 5


def test_bbox_with_nested_classifications_to_depth_three():
    nested = Classification("color", "radio", (Answer("red", (
        Classification("shade", "checklist", (Answer("dark", (
            Classification("why", "text", text="night"),)),)),)),))
    got = to_ndjson(TaskRegions(GK, (Region("r1", "car", Box(10, 20, 100, 50), (nested,)),)))
    want = expected(lb.ObjectAnnotation(
        name="car", value=lb.Rectangle.from_xyhw(10, 20, 50, 100),   # x, y, HEIGHT, width
        classifications=[lb.ClassificationAnnotation(name="color", value=lb.Radio(
            answer=lb.ClassificationAnswer(name="red", classifications=[
                lb.ClassificationAnnotation(name="shade", value=lb.Checklist(answer=[
                    lb.ClassificationAnswer(name="dark", classifications=[
                        lb.ClassificationAnnotation(name="why", value=lb.Text(answer="night"))])
                ]))])))],
        extra={"uuid": U["r1"]}))
    assert got == want
    assert got[0]["bbox"] == {"top": 20.0, "left": 10.0, "height": 50.0, "width": 100.0}
    assert got[0]["classifications"][0]["answer"]["classifications"][0]["answer"][0][
        "classifications"][0]["answer"] == "night"


def test_polygon_point_line():
    tr = TaskRegions(GK, (Region("r1", "road", Polygon(((1, 2), (3, 4), (5, 2)))),
                          Region("r2", "eye", KeyPoint(12.5, 7)),
                          Region("g1", "lane", Polyline(((1, 2), (3, 4))))))
    want = expected(
        lb.ObjectAnnotation(name="road", value=lb.Polygon(points=[
            lb.Point(x=1, y=2), lb.Point(x=3, y=4), lb.Point(x=5, y=2)]), extra={"uuid": U["r1"]}),
        lb.ObjectAnnotation(name="eye", value=lb.Point(x=12.5, y=7), extra={"uuid": U["r2"]}),
        lb.ObjectAnnotation(name="lane", value=lb.Line(points=[lb.Point(x=1, y=2),
                                                                lb.Point(x=3, y=4)]),
                            extra={"uuid": U["g1"]}))
    got = to_ndjson(tr)
    assert got == want
    assert got[0]["polygon"][0] == got[0]["polygon"][-1]  # Labelbox polygons are closed


def test_ner_end_becomes_inclusive():
    got = to_ndjson(TaskRegions(DataRowRef(id="cdr"), (Region("r1", "person", Span(0, 5, "Hello")),)))
    want = expected(lb.ObjectAnnotation(name="person", value=lb.TextEntity(start=0, end=4),
                                        extra={"uuid": U["r1"]}),
                    data=lb.GenericDataRowData(uid="cdr"))
    assert got == want and got[0]["location"] == {"start": 0, "end": 4}
    assert got[0]["dataRow"] == {"id": "cdr"}


def test_global_classifications_radio_checklist_text():
    tr = TaskRegions(GK, classifications=(
        Classification("weather", "radio", (Answer("rainy", (
            Classification("intensity", "text", text="heavy"),)),), id="g1"),
        Classification("tags", "checklist", (Answer("a"), Answer("b")), id="r1"),
        Classification("caption", "text", text="hello", id="r2")))
    want = expected(
        lb.ClassificationAnnotation(name="weather", value=lb.Radio(answer=lb.ClassificationAnswer(
            name="rainy", classifications=[lb.ClassificationAnnotation(
                name="intensity", value=lb.Text(answer="heavy"))])), extra={"uuid": U["g1"]}),
        lb.ClassificationAnnotation(name="tags", value=lb.Checklist(answer=[
            lb.ClassificationAnswer(name="a"), lb.ClassificationAnswer(name="b")]),
            extra={"uuid": U["r1"]}),
        lb.ClassificationAnnotation(name="caption", value=lb.Text(answer="hello"),
                                    extra={"uuid": U["r2"]}))
    assert to_ndjson(tr) == want


def test_relationships_only_for_mal():
    tr = TaskRegions(GK, (Region("r1", "person", Box(0, 0, 5, 5)),
                          Region("r2", "bike", Box(5, 5, 4, 4))),
                     relations=(Relation("r1", "r2", "rides"),))
    report = ConversionReport()
    ground_truth = to_ndjson(tr, report)
    assert [l.get("relationship") for l in ground_truth] == [None, None]
    assert report.skipped[("relationship", "relationships import only through MAL "
                           "(LABELBOX_IMPORT_KIND=mal), not as ground truth")] == 1
    mal = to_ndjson(tr, include_relations=True)
    rel = next(l for l in mal if "relationship" in l)
    assert rel["relationship"] == {"source": U["r1"], "target": U["r2"], "type": "unidirectional"}
    assert rel["uuid"] == relation_uuid("r1", "r2", "rides")


@pytest.mark.parametrize("rotation", [30.0, 90.0, 217.5])
def test_rotated_box_enclosing_box_or_polygon(rotation):
    box = Box(100, 100, 40, 20, rotation)
    corners = rotated_corners(box)
    report = ConversionReport()
    (line,) = to_ndjson(TaskRegions(GK, (Region("r1", "car", box),)), report)
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    assert line["bbox"] == pytest.approx({"left": min(xs), "top": min(ys),
                                          "width": max(xs) - min(xs), "height": max(ys) - min(ys)})
    assert any("rotation dropped" in r for (_, r) in report.skipped)
    (poly,) = to_ndjson(TaskRegions(GK, (Region("r1", "car", box),)), rotated_boxes="polygon")
    flat = [v for p in poly["polygon"][:-1] for v in (p["x"], p["y"])]
    assert flat == pytest.approx([v for c in corners for v in c])


def test_rotation_is_clockwise_about_the_top_left_corner():
    corners = rotated_corners(Box(10, 10, 20, 10, 90))  # width 20 along x turns to point down
    assert [v for c in corners for v in c] == pytest.approx([10, 10, 10, 30, 0, 30, 0, 10])


def test_a_task_without_data_row_is_an_error_that_says_so():
    with pytest.raises(DataRowMissing, match="neither data_row_id nor global_key"):
        to_ndjson(TaskRegions(DataRowRef(row_data="http://x"), (Region("r1", "a", KeyPoint(1, 1)),)))


def test_empty_answers_are_reported_not_sent():
    report = ConversionReport()
    got = to_ndjson(TaskRegions(GK, classifications=(
        Classification("caption", "text", text="", id="g1"),
        Classification("tags", "checklist", (), id="r1"))), report)
    assert got == [] and sum(report.skipped.values()) == 2


def test_features_go_by_the_ontologys_schema_id_else_its_exact_spelling():
    from labelbridge.model.features import FeatureTable

    table = FeatureTable()
    table.add(("object", "truck"), "truck", "c" + "t" * 24)
    table.add(("object", "truck", "Occluded"), "Occluded")              # known, no schema id
    table.add(("object", "truck", "Occluded", "Yes"), "Yes", "c" + "y" * 24)
    table.add(("classification", "weather"), "weather", "c" + "w" * 24)
    table.add(("classification", "weather", "rainy"), "rainy", "c" + "r" * 24)
    table.add(("classification", "weather", "rainy", "rain_intensity"), "rain_intensity",
              "c" + "i" * 24)
    nested = Classification("occluded", "radio", (Answer("yes"),))
    rain = Classification("rain_intensity", "radio", (Answer("heavy"),))
    tr = TaskRegions(GK, (Region("r1", "Truck", Box(0, 0, 1, 1), (nested,)),),
                     (Classification("Weather", "radio", (Answer("Rainy", (rain,)),), id="g1"),))
    obj, glob = to_ndjson(tr, features=table)
    assert obj["schemaId"] == "c" + "t" * 24 and "name" not in obj
    assert obj["classifications"] == [{"name": "Occluded", "answer": {"schemaId": "c" + "y" * 24}}]
    assert glob["schemaId"] == "c" + "w" * 24
    assert glob["answer"]["schemaId"] == "c" + "r" * 24
    assert glob["answer"]["classifications"] == [{"schemaId": "c" + "i" * 24,
                                                   "answer": {"name": "heavy"}}]
    plain = to_ndjson(TaskRegions(GK, (Region("r2", "Truck", Box(0, 0, 1, 1)),)))
    assert plain[0]["name"] == "Truck"        # nothing known: the name the mapping gave


def test_geometry_lines_are_rounded_to_the_documented_precision():
    (line,) = to_ndjson(TaskRegions(GK, (Region("r", "Car", Box(0.1, 0.2, 0.3, 319.9999999)),)))
    assert line["bbox"] == {"top": 0.2, "left": 0.1, "height": 320.0, "width": 0.3}


def test_relationships_go_by_the_ontologys_exact_name():
    from labelbridge.model.features import FeatureTable

    table = FeatureTable()
    table.add(("object", "Car"), "Car", "c" + "a" * 24)
    table.add(("relationship", "drives"), "drives", "c" + "r" * 24)
    tr = TaskRegions(GK, (Region("r1", "car", Box(0, 0, 1, 1)), Region("r2", "Car", Box(1, 1, 1, 1))),
                     relations=(Relation("r1", "r2", "Drives"),))
    lines = to_ndjson(tr, include_relations=True, features=table)
    (rel,) = [line for line in lines if "relationship" in line]
    objects = [line for line in lines if "bbox" in line]
    assert [o["schemaId"] for o in objects] == ["c" + "a" * 24] * 2
    assert rel["name"] == "drives" and rel["relationship"]["source"] == objects[0]["uuid"]
