"""Tests of the Labelbox stand-in itself, driven by the REAL labelbox SDK over HTTP."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import labelbox as lb
import labelbox.types as lbt
import pytest
import requests
from lbox import exceptions as lbx

from tests.lbstandin import Feature, LabelboxStandIn, Option

ROOT = Path(__file__).resolve().parents[2]
PID = "cprojstandin0000000000001"
OTHER_PID = "cprojstandin0000000000002"
DR1, DR2, DR3 = "cdrstandin000000000000001", "cdrstandin000000000000002", "cdrstandin000000000000003"
FAST = 0.05

ONTOLOGY = [
    Feature("car", "bbox", nested=[Feature("occluded", "radio", options=["yes", "no"]),
                                   Feature("plate", "text")]),
    Feature("person", "bbox"),
    Feature("road", "polygon"),
    Feature("eye", "point"),
    Feature("lane", "polyline"),
    Feature("person_ner", "ner"),
    Feature("weather", "radio", options=["sunny", "rainy"],
            nested={"rainy": [Feature("amount", "text")]}),
    Feature("tags", "checklist", options=["a", Option("b", nested=[Feature("why", "text")])]),
    Feature("caption", "text"),
    Feature("drives", "relationship"),
]


def _rows(*specs):
    return [{"id": i, "global_key": gk, "row_data": f"http://example.invalid/{gk}", "external_id": None,
             "media_attributes": {"width": 640, "height": 480}} for i, gk in specs]


@pytest.fixture
def s():
    stand = LabelboxStandIn(api_key="test-key")
    stand.add_project(PID, name="demo", media_type="IMAGE", ontology=ONTOLOGY)
    stand.add_data_rows(PID, _rows((DR1, "img-1.jpg"), (DR2, "img-2.jpg")))
    stand.add_project(OTHER_PID, name="other", ontology=[Feature("car", "bbox")])
    stand.add_data_rows(OTHER_PID, _rows((DR3, "img-3.jpg")))
    stand.start()
    yield stand
    stand.stop()


@pytest.fixture
def client(s):
    return s.client()


def u() -> str:
    return str(uuid.uuid4())


def bbox_line(gk="img-1.jpg", name="car", **extra):
    line = {"uuid": u(), "dataRow": {"globalKey": gk}, "name": name,
            "bbox": {"top": 10.0, "left": 20.0, "height": 30.0, "width": 40.0}}
    line.update(extra)
    return line


def run_import(client, lines, name=None, cls=lb.LabelImport, pid=PID):
    imp = cls.create_from_objects(client, pid, name or f"imp-{uuid.uuid4()}", lines)
    imp.wait_till_done(sleep_time_seconds=FAST)
    return imp


def file_import(client, tmp_path, text: str, cls=lb.LabelImport):
    path = tmp_path / f"{uuid.uuid4()}.ndjson"
    path.write_text(text)
    imp = cls.create_from_file(client, PID, f"file-{uuid.uuid4()}", str(path))
    imp.wait_till_done(sleep_time_seconds=FAST)
    return imp


# ----------------------------------------------------------------------------- 1. projects, auth
def test_get_project_fields_and_not_found(s, client):
    p = client.get_project(PID)
    assert p.uid == PID and p.name == "demo" and p.media_type == lb.MediaType.Image
    assert p.created_at is not None
    with pytest.raises(lbx.ResourceNotFoundError):
        client.get_project("cprojdoesnotexist00000001")


def test_wrong_api_key_raises_authentication_error(s):
    with pytest.raises(lbx.AuthenticationError):
        s.client(api_key="wrong-key").get_project(PID)
    assert s.calls["GetProjectPyApi"] == 0 and s.calls["__unauthorized__"] == 1


def test_unknown_operation_and_unknown_field_fail_loudly(s, client):
    with pytest.raises(lbx.InvalidQueryError, match="stand-in: unsupported operation query GetOrgPyApi"):
        client.execute("query GetOrgPyApi { organization { id name } }")
    with pytest.raises(lbx.InvalidQueryError, match='unsupported field "secretField" on type Project'):
        client.execute("query Q($id: ID!) { project(where: {id: $id}) { id secretField } }", {"id": PID})


# ----------------------------------------------------------------------------- 2. ontology
def test_ontology_normalized_shape_and_builder(s, client):
    onto = client.get_project(PID).ontology()
    norm = onto.normalized
    tools = {t["name"]: t for t in norm["tools"]}
    assert {n: t["tool"] for n, t in tools.items()} == {
        "car": "rectangle", "person": "rectangle", "road": "polygon", "eye": "point",
        "lane": "line", "person_ner": "named-entity", "drives": "edge"}
    for t in norm["tools"]:
        assert {"tool", "name", "featureSchemaId", "schemaNodeId", "color", "classifications"} <= set(t)
        assert len(t["featureSchemaId"]) == 25
    assert [c["name"] for c in tools["car"]["classifications"]] == ["occluded", "plate"]
    classes = {c["name"]: c for c in norm["classifications"]}
    assert {n: c["type"] for n, c in classes.items()} == {"weather": "radio", "tags": "checklist", "caption": "text"}
    rainy = classes["weather"]["options"][1]
    assert rainy["value"] == "rainy" and rainy["label"] == "rainy"
    assert [n["name"] for n in rainy["options"]] == ["amount"]
    assert classes["weather"]["options"][0]["options"] == []

    builder = lb.OntologyBuilder.from_ontology(onto)
    assert {t.name: t.tool for t in builder.tools}["drives"] == lb.Tool.Type.RELATIONSHIP
    assert {t.name: t.tool for t in builder.tools}["lane"] == lb.Tool.Type.LINE
    weather = next(c for c in builder.classifications if c.name == "weather")
    assert weather.class_type == lb.Classification.Type.RADIO
    assert weather.options[1].options[0].name == "amount"
    assert builder.asdict()["tools"][0]["featureSchemaId"] == tools["car"]["featureSchemaId"]
    assert onto.tools()[0].name == "car" and onto.classifications()[2].name == "caption"


# ----------------------------------------------------------------------------- 3. imports
def test_label_import_from_label_objects(s, client):
    label = lbt.Label(data={"global_key": "img-1.jpg"}, annotations=[
        lbt.ObjectAnnotation(name="car", value=lbt.Rectangle.from_xyhw(20, 10, 30, 40), classifications=[
            lbt.ClassificationAnnotation(name="occluded", value=lbt.Radio(answer=lbt.ClassificationAnswer(name="yes"))),
            lbt.ClassificationAnnotation(name="plate", value=lbt.Text(answer="AB-123"))]),
        lbt.ObjectAnnotation(name="road", value=lbt.Polygon(points=[lbt.Point(x=1, y=1), lbt.Point(x=9, y=1),
                                                                    lbt.Point(x=9, y=9)])),
        lbt.ObjectAnnotation(name="eye", value=lbt.Point(x=3, y=4)),
        lbt.ObjectAnnotation(name="lane", value=lbt.Line(points=[lbt.Point(x=0, y=0), lbt.Point(x=5, y=5)])),
        lbt.ObjectAnnotation(name="person_ner", value=lbt.TextEntity(start=0, end=4)),
        lbt.ClassificationAnnotation(name="weather", value=lbt.Radio(answer=lbt.ClassificationAnswer(
            name="rainy", classifications=[lbt.ClassificationAnnotation(name="amount", value=lbt.Text(answer="lots"))]))),
        lbt.ClassificationAnnotation(name="tags", value=lbt.Checklist(answer=[
            lbt.ClassificationAnswer(name="a"),
            lbt.ClassificationAnswer(name="b", classifications=[
                lbt.ClassificationAnnotation(name="why", value=lbt.Text(answer="because"))])])),
        lbt.ClassificationAnnotation(name="caption", value=lbt.Text(answer="hello")),
    ])
    imp = lb.LabelImport.create_from_objects(client, PID, "objects-1", [label])
    assert imp.state == lb.AnnotationImportState.RUNNING
    assert imp.status_file_url is None and imp.error_file_url is None
    imp.wait_till_done(sleep_time_seconds=FAST)
    assert imp.state == lb.AnnotationImportState.FINISHED and imp.progress == "100%"
    assert [st["status"] for st in imp.statuses] == ["SUCCESS"] * 8, imp.statuses
    assert imp.errors == []
    assert len(imp.inputs) == 8
    labels = s.labels(PID)
    assert len(labels) == 1
    lab = labels[0]
    assert lab["data_row_id"] == DR1 and lab["global_key"] == "img-1.jpg"
    assert lab["created_by"] == s.user_id and lab["import_name"] == "objects-1"
    assert len(lab["annotations"]) == 8
    assert s.calls["createLabelImport"] == 1 and s.calls["statusFile"] == 1


def test_label_import_from_dicts_and_from_name(s, client):
    lines = [bbox_line(), bbox_line("img-2.jpg"), {"uuid": u(), "dataRow": {"id": DR2}, "name": "caption", "answer": "x"}]
    imp = run_import(client, lines, name="dicts-1")
    assert [st["status"] for st in imp.statuses] == ["SUCCESS"] * 3
    assert imp.statuses[0] == {"uuid": lines[0]["uuid"], "dataRow": {"globalKey": "img-1.jpg"}, "status": "SUCCESS"}
    again = lb.LabelImport.from_name(client, PID, "dicts-1")
    assert again.uid == imp.uid and again.state == lb.AnnotationImportState.FINISHED
    assert again.project().uid == PID
    with pytest.raises(lbx.ResourceNotFoundError):
        lb.LabelImport.from_name(client, PID, "no-such-import")
    # one new label per data row present in the import
    assert sorted((lab["data_row_id"], len(lab["annotations"])) for lab in s.labels(PID)) == [(DR1, 1), (DR2, 2)]
    rec = s.imports(PID)[0]
    assert rec["name"] == "dicts-1" and rec["kind"] == "label" and rec["lines"] == lines
    assert rec["state"] == "FINISHED" and len(rec["statuses"]) == 3


def test_label_import_from_url_and_project_labels(s, client):
    first = run_import(client, [bbox_line(), bbox_line("img-2.jpg")])
    again = lb.LabelImport.create_from_url(client, PID, "from-url", first.input_file_url)
    again.wait_till_done(sleep_time_seconds=FAST)
    assert [st["status"] for st in again.statuses] == ["SUCCESS", "SUCCESS"]
    assert s.imports()[1]["lines"] == s.imports()[0]["lines"]
    assert {lab.uid for lab in client.get_project(PID).labels()} == {lab["id"] for lab in s.labels(PID)}
    assert len(s.labels(PID)) == 4


def test_duplicate_import_name_conflicts(s, client):
    run_import(client, [bbox_line()], name="same")
    with pytest.raises(lbx.ResourceConflict, match="already exists"):
        lb.LabelImport.create_from_objects(client, PID, "same", [bbox_line()])
    # MAL imports have their own namespace, and the same rule
    run_import(client, [bbox_line()], name="same", cls=lb.MALPredictionImport)
    with pytest.raises(lbx.ResourceConflict):
        lb.MALPredictionImport.create_from_objects(client, PID, "same", [bbox_line()])
    # the same name in another project is fine
    run_import(client, [bbox_line("img-3.jpg")], name="same", pid=OTHER_PID)


def test_import_into_unknown_project_is_refused(s, client):
    with pytest.raises(lbx.AuthorizationError):
        lb.LabelImport.create_from_objects(client, "cprojdoesnotexist00000001", "x", [bbox_line()])


def _nested_car(classifications):
    return bbox_line(classifications=classifications)


BAD_LINES = [
    ("unknown global key", bbox_line("nope.jpg"), "DataRowNotFound", "nope.jpg"),
    ("data row of another project", {**bbox_line(), "dataRow": {"id": DR3}}, "DataRowNotFound", DR3),
    ("non-uuid uuid", {**bbox_line(), "uuid": "region-1"}, "InvalidUUID", "region-1"),
    ("unknown feature", bbox_line(name="truck"), "FeatureNotFound", "truck"),
    ("bbox on a polygon tool", bbox_line(name="road"), "InvalidAnnotation", "polygon"),
    ("zero-width bbox", {**bbox_line(), "bbox": {"top": 1, "left": 1, "height": 5, "width": 0}},
     "InvalidAnnotation", "width"),
    ("bbox missing a key", {**bbox_line(), "bbox": {"top": 1, "left": 1, "height": 5}}, "InvalidAnnotation", "bbox"),
    ("degenerate polygon", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "road",
                            "polygon": [{"x": 1, "y": 1}, {"x": 2, "y": 2}, {"x": 1, "y": 1}]},
     "InvalidAnnotation", "3 distinct"),
    ("bad point", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "eye", "point": {"x": 1}},
     "InvalidAnnotation", "point"),
    ("one-point line", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "lane",
                        "line": [{"x": 1, "y": 1}]}, "InvalidAnnotation", "line"),
    ("ner start > end", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "person_ner",
                         "location": {"start": 5, "end": 2}}, "InvalidAnnotation", "start <= end"),
    ("radio unknown option", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "weather",
                              "answer": {"name": "snowy"}}, "FeatureNotFound", "snowy"),
    ("radio given a list", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "weather",
                            "answer": [{"name": "sunny"}]}, "InvalidAnnotation", "radio"),
    ("checklist given an object", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "tags",
                                   "answer": {"name": "a"}}, "InvalidAnnotation", "checklist"),
    ("text given a number", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "caption",
                             "answer": 5}, "InvalidAnnotation", "string"),
    ("nested classification under the wrong option",
     {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "weather",
      "answer": {"name": "sunny", "classifications": [{"name": "amount", "answer": "x"}]}},
     "FeatureNotFound", "amount"),
    ("unknown nested classification", _nested_car([{"name": "colour", "answer": {"name": "red"}}]),
     "FeatureNotFound", "colour"),
    ("bad nested answer", _nested_car([{"name": "occluded", "answer": {"name": "maybe"}}]),
     "FeatureNotFound", "maybe"),
    ("nested classification on ClassificationAnnotation level",
     {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "weather", "answer": {"name": "rainy"},
      "classifications": [{"name": "amount", "answer": "x"}]}, "InvalidAnnotation", "under the answer"),
    ("no geometry", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "car"},
     "InvalidAnnotation", "exactly one"),
    ("two geometries", {**bbox_line(), "point": {"x": 1, "y": 1}}, "InvalidAnnotation", "exactly one"),
    ("answer on a tool", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "car",
                          "answer": "x"}, "InvalidAnnotation", "tool"),
    ("unknown key", {**bbox_line(), "labelName": "car"}, "InvalidAnnotation", "labelName"),
    ("confidence out of range", {**bbox_line(), "confidence": 1.5}, "InvalidAnnotation", "confidence"),
    ("mask on a bbox tool", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "car",
                             "mask": {"instanceURI": "http://x", "colorRGB": [1, 1, 1]}},
     "InvalidAnnotation", "a 'mask' annotation is not allowed"),
    ("schemaId and name disagree", {**bbox_line(), "schemaId": "c" + "0" * 24}, "FeatureNotFound", "schemaId"),
]


@pytest.mark.parametrize("line,error,fragment", [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES])
def test_strict_line_validation(s, client, line, error, fragment):
    good = bbox_line("img-2.jpg")
    imp = run_import(client, [line, good])
    first, second = imp.statuses
    assert first["status"] == "FAILURE", first
    assert first["uuid"] == line["uuid"] and first["dataRow"] == line["dataRow"]
    assert [e["name"] for e in first["errors"]] == [error]
    assert fragment in first["errors"][0]["message"]
    assert first["errors"][0]["additionalInfo"] is None
    assert second["status"] == "SUCCESS"
    assert imp.errors == [first]
    # only the good line's data row got a label
    assert [lab["data_row_id"] for lab in s.labels(PID)] == [DR2]


GOOD_LINES = [
    ("uuid in braces", {**bbox_line(), "uuid": "{" + u() + "}"}),
    ("uuid without hyphens", {**bbox_line(), "uuid": uuid.uuid4().hex.upper()}),
    ("schemaId instead of name", "schema"),
    ("open polygon", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "road",
                      "polygon": [{"x": 1, "y": 1}, {"x": 5, "y": 1}, {"x": 5, "y": 5}]}),
    ("nested under the right option", {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "weather",
                                       "answer": {"name": "rainy", "classifications": [{"name": "amount", "answer": "x"}]}}),
    ("no uuid", {"dataRow": {"globalKey": "img-1.jpg"}, "name": "caption", "answer": "no uuid given"}),
]


@pytest.mark.parametrize("line", [c[1] for c in GOOD_LINES], ids=[c[0] for c in GOOD_LINES])
def test_accepted_lines(s, client, line):
    if line == "schema":
        car = next(t for t in client.get_project(PID).ontology().normalized["tools"] if t["name"] == "car")
        line = bbox_line()
        del line["name"]
        line["schemaId"] = car["featureSchemaId"]
    imp = run_import(client, [line])
    assert imp.statuses[0]["status"] == "SUCCESS", imp.statuses
    if "uuid" not in line:
        uuid.UUID(imp.statuses[0]["uuid"])  # the stand-in assigns one


def test_file_lines_that_the_sdk_would_refuse(s, client, tmp_path):
    lines = [[1, 2],
             {**bbox_line(), "dataRow": {"id": DR1, "globalKey": "img-1.jpg"}},
             {k: v for k, v in bbox_line().items() if k != "dataRow"},
             bbox_line()]
    imp = file_import(client, tmp_path, "\n".join(json.dumps(x) for x in lines) + "\n")
    names = [st["errors"][0]["name"] if st["status"] == "FAILURE" else "ok" for st in imp.statuses]
    assert names == ["InvalidAnnotation", "InvalidDataRow", "InvalidDataRow", "ok"]
    assert imp.statuses[0]["uuid"] is None and imp.statuses[0]["dataRow"] is None


@pytest.mark.parametrize("body", ["this is not json\n", "", '{"uuid": "x"}\n{not json}\n'])
def test_malformed_body_fails_the_import(s, client, tmp_path, body):
    imp = file_import(client, tmp_path, body)
    assert imp.state == lb.AnnotationImportState.FAILED
    with pytest.raises(ValueError, match="Import failed."):
        imp.statuses
    with pytest.raises(ValueError, match="Import failed."):
        imp.errors
    assert s.imports()[0]["failure"]
    assert s.labels() == []


def test_duplicate_uuid_within_a_data_row(s, client):
    same = u()
    lines = [bbox_line(uuid=same), bbox_line(uuid=same), bbox_line("img-2.jpg", uuid=same)]
    imp = run_import(client, lines)
    assert [st["status"] for st in imp.statuses] == ["SUCCESS", "FAILURE", "SUCCESS"]
    assert imp.statuses[1]["errors"][0]["name"] == "DuplicateAnnotation"


def test_relationships_label_import_refuses_mal_accepts(s, client):
    a, b = u(), u()
    rel = {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "drives",
           "relationship": {"source": a, "target": b, "type": "unidirectional"}}
    objects = [bbox_line(uuid=a, name="person"), bbox_line(uuid=b)]
    gt = run_import(client, [rel, *objects])
    assert [st["status"] for st in gt.statuses] == ["FAILURE", "SUCCESS", "SUCCESS"]
    assert gt.statuses[0]["errors"][0]["message"] == "Relationships are not supported for label import"

    labels_before = s.labels()
    mal = run_import(client, [rel, *objects], cls=lb.MALPredictionImport, name="mal-1")
    assert [st["status"] for st in mal.statuses] == ["SUCCESS"] * 3
    assert s.labels() == labels_before  # MAL creates no labels
    pre = s.prelabels(PID)
    assert len(pre) == 1 and len(pre[0]["annotations"]) == 3 and pre[0]["import_name"] == "mal-1"
    assert lb.MALPredictionImport.from_name(client, PID, "mal-1").uid == mal.uid

    dangling = {**rel, "uuid": u(), "relationship": {"source": a, "target": u(), "type": "unidirectional"}}
    other_row = {**rel, "uuid": u(), "dataRow": {"globalKey": "img-2.jpg"}}
    bad = run_import(client, [dangling, other_row, *[{**o, "uuid": x} for o, x in zip(objects, (a, b))]],
                     cls=lb.MALPredictionImport)
    assert [st["status"] for st in bad.statuses] == ["FAILURE", "FAILURE", "SUCCESS", "SUCCESS"]
    assert "target" in bad.statuses[0]["errors"][0]["message"]
    assert "source" in bad.statuses[1]["errors"][0]["message"]

    mal.delete()
    assert [p["import_name"] for p in s.prelabels(PID)] == [bad.name]
    with pytest.raises(lbx.ResourceNotFoundError):
        lb.MALPredictionImport.from_name(client, PID, "mal-1")


def test_every_import_creates_a_new_label(s, client):
    line = bbox_line()
    run_import(client, [line])
    run_import(client, [line])  # the same uuid again: a second label, not a replacement
    run_import(client, [bbox_line("nope.jpg")])  # nothing successful: no label
    labels = s.labels(PID)
    assert len(labels) == 2 and {lab["data_row_id"] for lab in labels} == {DR1}
    assert labels[0]["id"] != labels[1]["id"]
    assert all(lab["created_by"] == s.user_id for lab in labels)


def test_import_duration_keeps_imports_running(s, client):
    s.set_import_duration(0.3)
    imp = lb.LabelImport.create_from_objects(client, PID, "slow", [bbox_line()])
    imp.refresh()
    assert imp.state == lb.AnnotationImportState.RUNNING
    assert s.labels() == []
    t0 = time.monotonic()
    imp.wait_till_done(sleep_time_seconds=FAST)
    assert imp.state == lb.AnnotationImportState.FINISHED
    assert time.monotonic() - t0 >= 0.2
    assert s.calls["labelImport"] >= 3
    assert len(s.labels()) == 1


# ----------------------------------------------------------------------------- 6. reading / deleting labels
def test_read_and_delete_labels(s, client):
    run_import(client, [bbox_line(), bbox_line("img-2.jpg")])
    run_import(client, [bbox_line()])
    user = client.get_user()
    assert user.uid == s.user_id and user.email == "standin@example.com"

    dr = client.get_data_row(DR1)
    assert dr.global_key == "img-1.jpg" and dr.media_attributes == {"width": 640, "height": 480}
    by_key = client.get_data_row_by_global_key("img-1.jpg")
    assert by_key.uid == DR1
    with pytest.raises(lbx.ResourceNotFoundError):
        client.get_data_row_by_global_key("nope.jpg")
    with pytest.raises(lbx.ResourceNotFoundError):
        client.get_data_row("cdrdoesnotexist0000000001")

    labels = list(dr.labels())
    assert len(labels) == 2
    lab = labels[0]
    assert lab.project().uid == PID
    assert lab.created_by().uid == s.user_id
    assert lab.created_at is not None and lab.created_at.tzinfo is not None
    assert {x.uid for x in labels} == {x["id"] for x in s.labels(PID) if x["data_row_id"] == DR1}

    lb.Label.bulk_delete(labels)
    assert list(client.get_data_row(DR1).labels()) == []
    assert [x["data_row_id"] for x in s.labels(PID)] == [DR2]
    assert len(s.labels(PID, include_deleted=True)) == 3

    (other,) = list(client.get_data_row(DR2).labels())
    other.delete()
    assert s.labels(PID) == []


# ----------------------------------------------------------------------------- 7. exports
def _model_row(i, with_predictions=True):
    run = {"name": "run-a", "labels": []}
    if with_predictions:
        run["predictions"] = [{"id": f"pred{i}", "annotations": {
            "objects": [{"feature_id": f"cfeat{i:020d}", "name": "car", "annotation_kind": "ImageBoundingBox",
                         "bounding_box": {"top": i, "left": 1, "height": 2, "width": 3}, "classifications": []}],
            "classifications": [], "relationships": []}}]
    return {"data_row": {"id": f"cdrexport{i:016d}", "global_key": f"exp-{i}.jpg", "external_id": None,
                         "row_data": f"http://example.invalid/exp-{i}.jpg"},
            "media_attributes": {"width": 640, "height": 480, "mime_type": "image/jpeg"},
            "experiments": {"cmodel0000000000000000001": {"name": "m", "runs": {"crun00000000000000000001a": run}}}}


def test_model_run_export_streams_registered_rows(s, client):
    rows = [_model_row(i) for i in range(7)]
    s.add_model_run("cmodel0000000000000000001", "crun00000000000000000001a", "run-a", export_rows=rows)
    s.export_chunk_bytes = 600  # force several chunks
    mr = client.get_model_run("crun00000000000000000001a")
    assert mr.model_id == "cmodel0000000000000000001" and mr.name == "run-a"
    t0 = time.monotonic()
    task = mr.export(params={"predictions": True})
    task.wait_till_done()
    assert time.monotonic() - t0 < 1.5
    assert task.status == "COMPLETE"
    assert not task.has_errors() and task.has_result()
    assert task.get_total_lines(lb.StreamType.RESULT) == 7
    assert [item.json for item in task.get_buffered_stream()] == rows
    assert s.calls["exportFile"] >= 3
    assert s.calls["GetExportFileFromOffsetPyApi"] == s.calls["exportFile"]

    plain = mr.export()
    plain.wait_till_done()
    assert [item.json for item in plain.get_buffered_stream()] == [_model_row(i, False) for i in range(7)]
    with pytest.raises(lbx.ResourceNotFoundError):
        client.get_model_run("crundoesnotexist000000001")


def test_project_export_registered_rows_with_filters(s, client):
    rows = [{"data_row": {"id": DR1, "global_key": "img-1.jpg"}, "projects": {PID: {"name": "demo", "labels": []}}},
            {"data_row": {"id": DR2, "global_key": "img-2.jpg"}, "projects": {PID: {"name": "demo", "labels": []}}}]
    s.set_project_export_rows(PID, rows)
    project = client.get_project(PID)
    task = project.export(params={"label_details": True})
    task.wait_till_done()
    assert [x.json for x in task.get_buffered_stream()] == rows
    only = project.export(filters={"global_keys": ["img-2.jpg"]})
    only.wait_till_done()
    assert [x.json for x in only.get_buffered_stream()] == rows[1:]
    none = project.export(filters={"data_row_ids": ["cdrnotthere00000000000001"]})
    none.wait_till_done()
    assert not none.has_result() and not none.has_errors()


def test_project_export_generated_from_labels(s, client):
    car = bbox_line(classifications=[{"name": "occluded", "answer": {"name": "no"}}])
    weather = {"uuid": u(), "dataRow": {"globalKey": "img-1.jpg"}, "name": "weather",
               "answer": {"name": "rainy", "classifications": [{"name": "amount", "answer": "lots"}]}}
    run_import(client, [car, weather])
    task = client.get_project(PID).export(params={"label_details": True})
    task.wait_till_done()
    by_key = {x.json["data_row"]["global_key"]: x.json for x in task.get_buffered_stream()}
    assert set(by_key) == {"img-1.jpg", "img-2.jpg"}
    assert by_key["img-2.jpg"]["projects"][PID]["labels"] == []
    (label,) = by_key["img-1.jpg"]["projects"][PID]["labels"]
    assert label["label_details"]["created_by"] == "standin@example.com"
    (obj,) = label["annotations"]["objects"]
    assert obj["name"] == "car" and obj["annotation_kind"] == "ImageBoundingBox"
    assert obj["bounding_box"] == car["bbox"] and len(obj["feature_id"]) == 25
    assert obj["classifications"][0]["radio_answer"]["name"] == "no"
    (cls,) = label["annotations"]["classifications"]
    assert cls["radio_answer"]["classifications"][0]["text_answer"] == {"content": "lots"}


# ----------------------------------------------------------------------------- 9. faults
def test_429_raises_api_limit_error(s, client):
    s.fail_next(1, "429")
    with pytest.raises(lbx.ApiLimitError, match="You have exceeded"):
        lb.LabelImport.create_from_objects(client, PID, "limited", [bbox_line()])
    assert s.calls["createLabelImport"] == 0 and s.fault_log[0]["kind"] == "429"
    # the import was never created, so the same name works afterwards
    run_import(client, [bbox_line()], name="limited")


def test_429_during_polling_is_retried_by_the_sdk(s, client):
    imp = lb.LabelImport.create_from_objects(client, PID, "poll-429", [bbox_line()])
    s.fail_next(1, "429", operations={"labelImport"})
    imp.wait_till_done(sleep_time_seconds=FAST)
    assert imp.state == lb.AnnotationImportState.FINISHED
    assert [f["kind"] for f in s.fault_log] == ["429"]


def test_short_5xx_is_retried_transparently(s, client):
    s.fail_next(1, "502")
    assert client.get_project(PID).name == "demo"
    s.fail_next(1, "503", operations={"GetProjectPyApi"})
    assert client.get_project(PID).name == "demo"
    assert [f["kind"] for f in s.fault_log] == ["502", "503"]
    assert s.calls["GetProjectPyApi"] == 2


def test_fail_for_window_and_operation_filter(s, client):
    s.fail_for(30, "500", operations={"createLabelImport"})
    assert client.get_project(PID).name == "demo"  # other operations are unaffected
    s.clear_faults()
    s.fail_for(0.2, "429")
    with pytest.raises(lbx.ApiLimitError):
        client.get_project(PID)
    time.sleep(0.25)
    assert client.get_project(PID).name == "demo"


def test_go_down_and_come_back_on_the_same_port(s, client):
    port = s.port
    s.go_down()
    with pytest.raises(lbx.NetworkError) as info:
        client.get_project(PID)
    assert isinstance(info.value.cause, requests.exceptions.ConnectionError)
    s.come_back()
    assert s.port == port
    assert client.get_project(PID).name == "demo"


def test_drop_and_short_hang(s, client):
    s.fail_next(1, "drop")
    with pytest.raises(lbx.NetworkError):
        client.get_project(PID)
    s.fail_next(1, "hang", seconds=0.3)
    t0 = time.monotonic()
    assert client.get_project(PID).name == "demo"
    assert time.monotonic() - t0 >= 0.3


def test_a_lost_answer_after_the_import_was_created(s, client):
    s.fail_next(1, "lost", operations={"createLabelImport"})
    with pytest.raises(lbx.NetworkError):
        lb.LabelImport.create_from_objects(client, PID, "lost-answer", [bbox_line()])
    # the request was handled: the import exists, only its answer never arrived
    assert [i["name"] for i in s.imports(PID)] == ["lost-answer"]
    assert lb.LabelImport.from_name(client, PID, "lost-answer").name == "lost-answer"
    s.fail_next(1, "lost", operations={"statusFile"})
    imp = lb.LabelImport.from_name(client, PID, "lost-answer")
    with pytest.raises(requests.exceptions.ConnectionError):
        imp.statuses
    assert imp.statuses[0]["status"] == "SUCCESS"


def test_faults_on_file_downloads(s, client):
    imp = run_import(client, [bbox_line()])
    s.fail_next(1, "500", operations={"statusFile"})
    with pytest.raises(requests.exceptions.HTTPError):
        imp.statuses
    assert imp.statuses[0]["status"] == "SUCCESS"


def test_reset_calls(s, client):
    client.get_project(PID)
    assert s.calls["project"] == 1 and s.calls["GetProjectPyApi"] == 1
    s.reset_calls()
    assert not s.calls


# ----------------------------------------------------------------------------- process mode
def _read_line(proc, timeout=20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            return proc.stdout.readline().decode().strip()
        if proc.poll() is not None:
            break
    raise AssertionError(f"no output from stand-in (rc={proc.poll()})")


def _http(method, url, doc=None):
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_process_mode(tmp_path):
    setup = {"projects": [{"id": PID, "name": "demo", "media_type": "IMAGE",
                           "ontology": [{"name": "car", "kind": "bbox",
                                         "nested": [{"name": "occluded", "kind": "radio", "options": ["yes", "no"]}]},
                                        {"name": "weather", "kind": "radio",
                                         "options": ["sunny", {"value": "rainy", "nested": [{"name": "amount", "kind": "text"}]}]}],
                           "data_rows": [{"id": DR1, "global_key": "img-1.jpg", "row_data": "http://x/1.jpg",
                                          "media_attributes": {"width": 10, "height": 10}}]}],
             "model_runs": [{"model_id": "cmodel0000000000000000001", "run_id": "crun00000000000000000001a",
                             "name": "r", "export_rows": [_model_row(0)]}]}
    (tmp_path / "setup.json").write_text(json.dumps(setup))
    proc = subprocess.Popen([sys.executable, "-m", "tests.lbstandin", "--host", "127.0.0.1", "--port", "0",
                             "--api-key", "proc-key", "--setup", str(tmp_path / "setup.json")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        line = _read_line(proc)
        assert line.startswith("LISTENING http://127.0.0.1:"), line
        base = line.split()[1]
        assert _http("GET", base + "/_standin/health")["ok"] is True
        client = lb.Client(api_key="proc-key", endpoint=base + "/graphql", rest_endpoint=base + "/api/v1", app_url=base)
        assert client.get_project(PID).name == "demo"
        imp = run_import(client, [bbox_line(classifications=[{"name": "occluded", "answer": {"name": "yes"}}]),
                                  {"uuid": u(), "dataRow": {"id": DR1}, "name": "weather",
                                   "answer": {"name": "rainy", "classifications": [{"name": "amount", "answer": "2mm"}]}}])
        assert [st["status"] for st in imp.statuses] == ["SUCCESS", "SUCCESS"]
        state = _http("GET", base + "/_standin/state")
        assert len(state["labels"]) == 1 and state["imports"][0]["state"] == "FINISHED"
        assert state["calls"]["createLabelImport"] == 1
        _http("POST", base + "/_standin/faults", {"fail_next": {"n": 1, "kind": "429"}})
        with pytest.raises(lbx.ApiLimitError):
            client.get_project(PID)
        _http("POST", base + "/_standin/faults", {"down_for": 0.5})
        deadline = time.monotonic() + 3
        with pytest.raises(lbx.NetworkError):
            while time.monotonic() < deadline:  # goes down ~0.1 s after the answer
                client.get_project(PID)
                time.sleep(0.02)
        while True:  # and comes back on the same port
            try:
                assert client.get_project(PID).name == "demo"
                break
            except lbx.NetworkError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        _http("POST", base + "/_standin/reset-calls", {})
        assert _http("GET", base + "/_standin/state")["calls"] == {}
        task = client.get_model_run("crun00000000000000000001a").export(params={"predictions": True})
        task.wait_till_done()
        assert [x.json for x in task.get_buffered_stream()] == [_model_row(0)]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0
