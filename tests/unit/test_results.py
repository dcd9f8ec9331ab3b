"""Neutral regions <-> Label Studio results, validated with the real LabelInterface."""

import pytest

from labelbridge.labelbox.export import Selection, compact_row, task_regions
from labelbridge.labelstudio.mapping import Mapping, Overrides
from labelbridge.labelstudio.results import ResultReader, ResultWriter
from labelbridge.model.regions import (Answer, Box, Classification, DataRowRef, KeyPoint, Polygon,
                                       Polyline, Region, Relation, Span, TaskRegions)
from labelbridge.model.report import ConversionReport

from tests.helpers import (IMAGE_CONFIG, TEXT_CONFIG, bbox, capture, checklist, export_row, radio,
                           text)

REF = DataRowRef(id="cdatarow00000000000000001")


def tree(classifications):
    """Names, kinds, answers and text of classification trees (ids left out)."""
    return [(c.name, c.kind, c.text, [(a.name, tree(a.classifications)) for a in c.answers])
            for c in classifications]


def write(tr, config=IMAGE_CONFIG, overrides=None):
    report = ConversionReport()
    mapping = Mapping(config, overrides)
    result = ResultWriter(mapping, report).write(tr)
    assert mapping.interface.validate_prediction({"result": result}, return_errors=True) == []
    return result, report


def test_box_percent_of_original_size_and_labels():
    tr = TaskRegions(REF, (Region("cb1", "car", Box(64, 48, 128, 96), score=0.5),), width=640,
                     height=480)
    (item,), report = write(tr)
    assert item == {"id": "cb1", "from_name": "label", "to_name": "image",
                    "type": "rectanglelabels", "original_width": 640, "original_height": 480,
                    "image_rotation": 0, "score": 0.5,
                    "value": {"x": 10.0, "y": 10.0, "width": 20.0, "height": 20.0,
                              "rotation": 0.0, "rectanglelabels": ["Car"]}}
    assert report.converted["bbox"] == 1


def test_polygon_and_keypoint():
    tr = TaskRegions(REF, (Region("cp", "road", Polygon(((0, 0), (64, 0), (64, 48)))),
                           Region("ck", "nose", KeyPoint(320, 240))), width=640, height=480)
    result, _ = write(tr)
    assert result[0]["value"] == {"points": [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]],
                                  "closed": True, "polygonlabels": ["road"]}
    assert result[1]["value"] == {"x": 50.0, "y": 50.0, "width": 0.3125,  # 2 px of 640
                                  "keypointlabels": ["nose"]}


KEYPOINT_TOOLS = {  # (label config, control) -> the strokeWidth Label Studio draws with
    "default": ('<KeyPointLabels name="kp" toName="image"><Label value="nose"/>'
                '</KeyPointLabels>', 2.0),
    "set": ('<KeyPointLabels name="kp" toName="image" strokeWidth="6"><Label value="nose"/>'
            '</KeyPointLabels>', 6.0),
    "not a number": ('<KeyPointLabels name="kp" toName="image" strokeWidth="wide">'
                     '<Label value="nose"/></KeyPointLabels>', 2.0),
    "tool + labels": ('<KeyPoint name="kp" toName="image" strokeWidth="4"/><Labels name="lab" '
                      'toName="image"><Label value="nose"/></Labels>', 4.0),
}


@pytest.mark.parametrize("name", list(KEYPOINT_TOOLS))
def test_keypoint_width_is_the_tools_stroke_width_in_percent_of_the_image_width(name):
    """Label Studio's editor recognises (and draws) a key point only with ``value.width``."""
    tool, stroke = KEYPOINT_TOOLS[name]
    config = f'<View><Image name="image" value="$image"/>{tool}' \
             '<Choices name="seen" toName="image" perRegion="true"><Choice value="yes"/>' \
             '</Choices></View>'
    tr = TaskRegions(REF, (Region("ck", "nose", KeyPoint(320, 240), (Classification(
        "seen", "radio", (Answer("yes"),)),)),), width=800, height=600)
    result, report = write(tr, config)
    point, seen = result
    assert point["value"]["width"] == seen["value"]["width"] == stroke / 800 * 100
    assert (point["value"]["x"], point["value"]["y"]) == (40.0, 40.0)
    assert report.lossless


@pytest.mark.parametrize("width", [0.3125, 7, "wide", None, float("nan")])
def test_keypoint_width_is_read_back_harmlessly(width):
    """The width is how the editor draws the point: Labelbox points have no size."""
    mapping = Mapping(IMAGE_CONFIG)
    value = {"x": 50.0, "y": 25.0, "keypointlabels": ["nose"]}
    if width is not None:
        value["width"] = width
    result = [{"id": "ck", "from_name": "kp", "to_name": "image", "type": "keypointlabels",
               "original_width": 640, "original_height": 480, "value": value}]
    report = ConversionReport()
    tr = ResultReader(mapping, report).read(result, REF)
    assert [r.shape for r in tr.regions] == [KeyPoint(320.0, 120.0)]
    assert report.lossless


def test_per_region_controls_share_the_region_id_and_repeat_geometry():
    deep = Classification("occluded", "radio", (Answer("yes", (
        Classification("attributes", "checklist", (Answer("parked"), Answer("blurred", (
            Classification("cause", "radio", (Answer("motion"),)),)))),)),))
    tr = TaskRegions(REF, (Region("cb", "Car", Box(0, 0, 64, 48), (deep, Classification(
        "note", "text", text="dented"))),), width=640, height=480)
    result, _ = write(tr)
    assert {r["id"] for r in result} == {"cb"}
    by_control = {r["from_name"]: r["value"] for r in result}
    geometry = {"x": 0.0, "y": 0.0, "width": 10.0, "height": 10.0, "rotation": 0.0}
    assert by_control["occluded"] == {**geometry, "choices": ["yes"]}
    assert by_control["attributes"] == {**geometry, "choices": ["parked", "blurred"]}
    assert by_control["cause"] == {**geometry, "choices": ["motion"]}  # depth 3
    assert by_control["note"] == {**geometry, "text": ["dented"]}


def test_global_nested_classifications_get_their_own_ids():
    weather = Classification("weather", "radio", (Answer("rainy", (Classification(
        "rain_intensity", "radio", (Answer("heavy", (Classification(
            "wet", "radio", (Answer("flooded"),), id="cwet"),)),), id="cint"),)),), id="cw")
    result, _ = write(TaskRegions(REF, classifications=(weather,), width=640, height=480))
    assert [(r["id"], r["from_name"], r["value"]["choices"]) for r in result] == [
        ("cw", "weather", ["rainy"]), ("cint", "rain_intensity", ["heavy"]),
        ("cwet", "wet", ["flooded"])]


def test_number_and_rating_from_text_answers():
    tr = TaskRegions(REF, classifications=(Classification("count", "text", text="3", id="c1"),
                                           Classification("quality", "text", text="4", id="c2"),
                                           Classification("quality", "text", text="9", id="c3")))
    result, report = write(tr)
    assert [r["value"] for r in result] == [{"number": 3}, {"rating": 4}]
    (loss,) = report.examples
    assert "not a whole rating" in loss.reason and loss.detail == "'9', maxRating 5"
    assert (loss.feature, loss.region, loss.data_row) == ("quality", "c3", REF.id)


def test_relations_are_flat_items_between_converted_regions():
    tr = TaskRegions(REF, (Region("ca", "Person", Box(0, 0, 10, 10)),
                           Region("cb", "Bicycle", Box(10, 10, 10, 10))),
                     relations=(Relation("ca", "cb", "drives"),
                                Relation("cb", "ca", "next_to", bidirectional=True),
                                Relation("ca", "cx", "drives")), width=640, height=480)
    result, report = write(tr)
    rels = [r for r in result if r["type"] == "relation"]
    assert rels == [{"from_id": "ca", "to_id": "cb", "type": "relation", "direction": "right",
                     "labels": ["drives"]},
                    {"from_id": "cb", "to_id": "ca", "type": "relation", "direction": "bi",
                     "labels": ["next_to"]}]
    assert report.skipped[("relationship", "source or target region was not converted")] == 1


def test_unmappable_features_are_reported_with_feature_and_data_row():
    tr = TaskRegions(REF, (Region("cz", "Zebra", Box(0, 0, 1, 1)),
                           Region("cl", "lane", Polyline(
                               ((0, 0), (1, 1))))), width=640, height=480)
    result, report = write(tr)
    assert result == []
    losses = {str(e) for e in report.examples}
    assert f"bbox: no Label Studio control/label for this feature (feature 'Zebra', region cz, " \
           f"data row {REF.id})" in losses
    assert any("Label Studio has no tool for a polyline" in e for e in losses)


def test_image_without_size_is_reported():
    result, report = write(TaskRegions(REF, (Region("cb", "Car", Box(0, 0, 1, 1)),)))
    assert result == [] and any("image size unknown" in r for (_, r) in report.skipped)


def test_ner_spans_and_document_classification():
    text_ = "Ada met Bob."
    tr = TaskRegions(REF, (Region("cn", "per", Span(0, 3, "Ada")),),
                     (Classification("sentiment", "radio", (Answer("positive"),), id="cs"),
                      Classification("summary", "text", text="short", id="ct")))
    result, _ = write(tr, TEXT_CONFIG)
    assert result[0] == {"id": "cn", "from_name": "label", "to_name": "text", "type": "labels",
                         "value": {"start": 0, "end": 3, "text": "Ada", "labels": ["PER"]}}
    assert text_[result[0]["value"]["start"]:result[0]["value"]["end"]] == "Ada"
    assert result[2]["value"] == {"text": ["short"]}


def test_mapping_file_renames_features_and_answers():
    ov = Overrides.from_dict({"objects": [{"labelbox": "Vehicle", "control": "label",
                                           "label": "Car"}],
                              "classifications": [{"labelbox": "Is occluded?",
                                                   "control": "occluded",
                                                   "answers": {"Yes": "yes", "No": "no"}}]})
    tr = TaskRegions(REF, (Region("cb", "Vehicle", Box(0, 0, 64, 48), (Classification(
        "Is occluded?", "radio", (Answer("Yes"),)),)),), width=640, height=480)
    result, _ = write(tr, overrides=ov)
    assert result[0]["value"]["rectanglelabels"] == ["Car"]
    assert result[1]["value"]["choices"] == ["yes"]
    back = ResultReader(Mapping(IMAGE_CONFIG, ov), ConversionReport()).read(result, REF)
    assert back.regions[0].name == "Vehicle"
    assert back.regions[0].classifications[0].answers[0].name == "Yes"


# ----- Label Studio -> neutral, on bodies Label Studio 1.23.2 really sent --------------------

def test_reads_the_captured_annotation_with_per_region_choice_and_relation():
    body = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
    mapping = Mapping(body["project"]["label_config"])
    report = ConversionReport()
    tr = ResultReader(mapping, report).read(body["annotation"]["result"], REF)
    car, person = tr.regions
    assert (car.id, car.name, person.id, person.name) == ("lbBox000001", "Car", "lbBox000002",
                                                          "Person")
    assert car.shape == Box(64.0, 96.0, 192.0, 192.0)      # 10/20/30/40 % of 640x480
    assert car.classifications[0].name == "attr"
    assert car.classifications[0].answers[0].name == "occluded"
    assert tr.relations == (Relation("lbBox000002", "lbBox000001", "drives"),)
    assert tr.classifications[0].id == "lbCls000001"
    assert (tr.width, tr.height) == (640, 480)
    assert report.lossless


def test_rectangle_tool_with_generic_labels_merged_result():
    config = ('<View><Image name="img" value="$image"/><Rectangle name="rect" toName="img"/>'
              '<Labels name="lab" toName="img"><Label value="Sign"/></Labels></View>')
    mapping = Mapping(config)
    tr = TaskRegions(REF, (Region("cs", "Sign", Box(64, 48, 64, 48)),), width=640, height=480)
    result = ResultWriter(mapping, ConversionReport()).write(tr)
    assert result[0]["from_name"] == "lab" and result[0]["type"] == "rectanglelabels"
    assert mapping.interface.validate_prediction({"result": result}, return_errors=True) == []
    back = ResultReader(mapping, ConversionReport()).read(result, REF)
    assert back.regions[0].shape == Box(64, 48, 64, 48)


def test_left_relations_are_reversed_and_unknown_controls_reported():
    mapping = Mapping(IMAGE_CONFIG)
    base = {"original_width": 100, "original_height": 100, "to_name": "image",
            "type": "rectanglelabels"}
    result = [{**base, "id": "a", "from_name": "label",
               "value": {"x": 0, "y": 0, "width": 1, "height": 1, "rectanglelabels": ["Car"]}},
              {**base, "id": "b#ann7", "from_name": "label",
               "value": {"x": 5, "y": 5, "width": 1, "height": 1, "rectanglelabels": ["Person"]}},
              {"from_id": "a", "to_id": "b", "type": "relation", "direction": "left",
               "labels": ["drives"]},
              {"id": "z", "from_name": "nope", "to_name": "image", "type": "choices",
               "value": {"choices": ["x"]}}]
    report = ConversionReport()
    tr = ResultReader(mapping, report).read(result, REF)
    assert [r.id for r in tr.regions] == ["a", "b"]   # '#suffix' cut as the editor does
    assert tr.relations[0].source == "b" and tr.relations[0].target == "a"
    (loss,) = [e for e in report.examples if e.feature == "nope"]
    assert (loss.reason, loss.region) == ("no Labelbox classification for this control", "z")


def test_nested_children_of_an_unselected_answer_are_reported():
    mapping = Mapping(IMAGE_CONFIG)
    result = [{"id": "w", "from_name": "weather", "to_name": "image", "type": "choices",
               "value": {"choices": ["sunny"]}},
              {"id": "i", "from_name": "rain_intensity", "to_name": "image", "type": "choices",
               "value": {"choices": ["heavy"]}}]
    report = ConversionReport()
    tr = ResultReader(mapping, report).read(result, REF)
    assert [c.name for c in tr.classifications] == ["weather", "rain_intensity"]
    assert any("is not selected" in r for (_, r) in report.skipped)


@pytest.mark.parametrize("row_objects, row_cls", [
    ([bbox("cb", "Car", 1, 2, 3, 4, classifications=[radio("co", "occluded", "yes", [
        checklist("ca", "attributes", ["blurred"], {"blurred": [radio("cc", "cause", "focus")]})])
    ])], [radio("cw", "weather", "rainy", [radio("ci", "rain_intensity", "light")]),
          text("cn", "count", "7")]),
])
def test_export_to_ls_and_back_is_lossless(row_objects, row_cls):
    row = export_row(row_objects, row_cls)
    tr = task_regions(compact_row(row, Selection())[1])
    mapping = Mapping(IMAGE_CONFIG)
    result = ResultWriter(mapping, ConversionReport()).write(tr)
    report = ConversionReport()
    back = ResultReader(mapping, report).read(result, tr.data_row)
    assert report.lossless
    assert tree(back.regions[0].classifications) == tree(tr.regions[0].classifications)
    assert [c.name for c in back.classifications] == ["weather", "count"]
    assert back.classifications[0].answers[0].classifications[0].answers[0].name == "light"


def test_nesting_the_config_does_not_express_is_declared():
    config = ('<View><Image name="image" value="$image"/>'
              '<RectangleLabels name="label" toName="image"><Label value="Car"/></RectangleLabels>'
              '<Choices name="occluded" toName="image" perRegion="true"><Choice value="yes"/></Choices>'
              '<Choices name="attributes" toName="image" perRegion="true" choice="multiple">'
              '<Choice value="parked"/></Choices></View>')
    nested = Classification("occluded", "radio", (Answer("yes", (
        Classification("attributes", "checklist", (Answer("parked"),)),)),))
    tr = TaskRegions(REF, (Region("cb", "Car", Box(0, 0, 64, 48), (nested,)),), width=640,
                     height=480)
    result, report = write(tr, config)
    assert [r["from_name"] for r in result] == ["label", "occluded", "attributes"]
    assert any(k == "nesting" and "has no visibleWhen on it: sent, and shown unconditionally" in r
               for k, r in report.skipped)
