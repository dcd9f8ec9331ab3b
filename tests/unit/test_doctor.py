"""`labelbridge doctor`: label configs + mapping files against Labelbox ontologies broken in each
way, with the exact messages (the contract in tools/doctor/findings.py's docstring)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import labelbox as lb
import pytest
from typer.testing import CliRunner

from labelbridge.labelbox.ontology import Ontology, OntologyError, load_ontology
from labelbridge.labelstudio.mapping import Mapping, Overrides
from labelbridge.service.cli import app
from labelbridge.settings import env_names, load_settings
from labelbridge.tools.doctor import Finding, check, run_checks

from tests.helpers import IMAGE_CONFIG
from tests.procs import free_port

C, O, T = lb.Classification, lb.Option, lb.Tool


# ----- builders ------------------------------------------------------------------------------

def normalized(tools=(), classifications=()) -> dict:
    """The ontology JSON exactly as the SDK builds it (project.ontology().normalized shape)."""
    return lb.OntologyBuilder(tools=list(tools), classifications=list(classifications)).asdict()


def ontology(tools=(), classifications=()) -> Ontology:
    return Ontology.from_normalized(normalized(tools, classifications))


def radio(name, *options, **nested) -> C:
    return C(C.Type.RADIO, name, options=[O(o, options=list(nested.get(o, []))) for o in options])


def checklist(name, *options, **nested) -> C:
    return C(C.Type.CHECKLIST, name,
             options=[O(o, options=list(nested.get(o, []))) for o in options])


def text(name) -> C:
    return C(C.Type.TEXT, name)


def bbox(name, *nested) -> T:
    return T(T.Type.BBOX, name, classifications=list(nested))


def image(*controls: str) -> str:
    return '<View><Image name="image" value="$image"/>' + "".join(controls) + "</View>"


def rects(*labels: str, name="label") -> str:
    return (f'<RectangleLabels name="{name}" toName="image">'
            + "".join(f'<Label value="{v}"/>' for v in labels) + "</RectangleLabels>")


def choices(name, *values, **attrs) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return (f'<Choices name="{name}" toName="image"{extra}>'
            + "".join(f'<Choice value="{v}"/>' for v in values) + "</Choices>")


def findings(config: str, ont: Ontology, mapping: dict | None = None) -> list[tuple]:
    m = Mapping(config, Overrides.from_dict(mapping) if mapping else None, ont.names())
    return [(f.severity, f.code, f.message) for f in check(m, ont)]


def errors(*messages_by_code: tuple[str, str]) -> list[tuple]:
    return [("error", code, message) for code, message in messages_by_code]


def per_region_questions() -> list[C]:
    return [radio("occluded", "yes", "no", yes=[
                checklist("attributes", "parked", "blurred", blurred=[
                    radio("cause", "motion", "focus")])]),
            text("note")]


def image_ontology() -> dict:
    """Everything tests.helpers.IMAGE_CONFIG holds, as a Labelbox ontology."""
    return normalized(
        [bbox(n, *per_region_questions()) for n in ("car", "person", "bicycle")]
        + [T(T.Type.POLYGON, "road", classifications=per_region_questions()),
           T(T.Type.POINT, "nose", classifications=per_region_questions()),
           T(T.Type.RELATIONSHIP, "drives"), T(T.Type.RELATIONSHIP, "next_to")],
        [radio("weather", "sunny", "rainy", rainy=[
            radio("rain_intensity", "light", "heavy", heavy=[
                radio("wet", "puddles", "flooded")])]),
         text("count"), text("quality")])


# ----- a fully matching pair -----------------------------------------------------------------

def test_fully_matching_pair_has_no_findings():
    assert findings(IMAGE_CONFIG, Ontology.from_normalized(image_ontology())) == []


def test_text_config_matches_its_ontology():
    config = ('<View><Text name="text" value="$text"/>'
              '<Labels name="ner" toName="text"><Label value="PER"/><Label value="ORG"/></Labels>'
              '<Choices name="sentiment" toName="text"><Choice value="positive"/>'
              '<Choice value="negative"/></Choices><TextArea name="summary" toName="text"/></View>')
    ont = ontology([T(T.Type.NER, "per"), T(T.Type.NER, "org")],
                   [radio("Sentiment", "Positive", "Negative"), text("summary")])
    assert findings(config, ont) == []


# ----- Labelbox features with no Label Studio control ----------------------------------------

def test_labelbox_tool_without_control():
    ont = ontology([bbox("car"), bbox("truck")])
    assert findings(image(rects("Car")), ont) == errors(
        ("lb-unmapped-object", "Labelbox tool 'truck' (bbox) has no Label Studio control"))


def test_labelbox_classifications_without_control_say_where_they_are_nested():
    ont = ontology([bbox("car", radio("occluded", "yes", "no"))],
                   [radio("weather", "sunny", "rainy", rainy=[
                       radio("rain_intensity", "light", "heavy")])])
    assert findings(image(rects("Car"), choices("weather", "sunny", "rainy")), ont) == errors(
        ("lb-unmapped-classification",
         "Labelbox classification 'occluded' (radio) nested under tool 'car' has no Label "
         "Studio control"),
        ("lb-unmapped-classification",
         "Labelbox classification 'rain_intensity' (radio) nested under 'weather' = 'rainy' "
         "has no Label Studio control"))


def test_deep_nesting_path_and_top_level_classification():
    config = image(rects("Car"),
                   choices("occluded", "yes", "no", perRegion="true"),
                   choices("attributes", "parked", "blurred", perRegion="true",
                           choice="multiple", visibleWhen="choice-selected",
                           whenTagName="occluded", whenChoiceValue="yes"))
    ont = ontology([bbox("car", per_region_questions()[0])], [radio("weather", "sunny")])
    assert findings(config, ont) == errors(
        ("lb-unmapped-classification",
         "Labelbox classification 'cause' (radio) nested under tool 'car' > 'occluded' = 'yes' "
         "> 'attributes' = 'blurred' has no Label Studio control"),
        ("lb-unmapped-classification",
         "Labelbox classification 'weather' (radio) has no Label Studio control"))


def test_labelbox_option_without_choice():
    ont = ontology(classifications=[radio("weather", "sunny", "rainy", "snowy")])
    assert findings(image(choices("weather", "sunny", "rainy")), ont) == errors(
        ("lb-unmapped-option",
         "Labelbox option 'snowy' of 'weather' has no <Choice> in control 'weather'"))


def test_options_under_an_unmapped_option_are_not_reported_twice():
    ont = ontology(classifications=[radio("weather", "sunny", "snowy", snowy=[
        radio("depth", "shallow", "deep")])])
    assert findings(image(choices("weather", "sunny")), ont) == errors(
        ("lb-unmapped-option",
         "Labelbox option 'snowy' of 'weather' has no <Choice> in control 'weather'"))


# ----- Label Studio labels and controls with no Labelbox feature -----------------------------

def test_label_studio_label_without_feature():
    ont = ontology([bbox("car")])
    assert findings(image(rects("Car", "Truck")), ont) == errors(
        ("ls-unmapped-label",
         "Label Studio label 'Truck' of control 'label' (RectangleLabels) has no Labelbox "
         "feature"))


def test_label_renamed_by_the_mapping_file_names_the_missing_feature():
    ont = ontology([bbox("car")])
    mapping = {"objects": [{"labelbox": "lorry", "control": "label", "label": "Truck"}]}
    assert findings(image(rects("Car", "Truck")), ont, mapping) == errors(
        ("ls-unmapped-label",
         "Label Studio label 'Truck' of control 'label' (RectangleLabels) has no Labelbox "
         "feature (mapped to 'lorry')"))


def test_label_studio_control_without_classification():
    ont = ontology([bbox("car")])
    config = image(rects("Car"), '<TextArea name="note" toName="image"/>')
    assert findings(config, ont) == errors(
        ("ls-unmapped-control",
         "Label Studio control 'note' (TextArea) has no Labelbox classification"))


def test_label_less_tool_needs_the_mapping_file():
    config = image('<Rectangle name="box" toName="image"/>')
    assert findings(config, ontology([bbox("vehicle")])) == errors(
        ("lb-unmapped-object", "Labelbox tool 'vehicle' (bbox) has no Label Studio control"),
        ("ls-unmapped-control", "Label Studio control 'box' (Rectangle) has no Labelbox tool: "
                                "name one for it in the mapping file"))
    named = {"objects": [{"labelbox": "vehicle", "control": "box"}]}
    assert findings(config, ontology([bbox("vehicle")]), named) == []
    assert findings(config, ontology([bbox("car")]), named) == errors(
        ("lb-unmapped-object", "Labelbox tool 'car' (bbox) has no Label Studio control"),
        ("ls-unmapped-label",
         "Label Studio control 'box' (Rectangle) has no Labelbox feature (mapped to 'vehicle')"))


def test_label_studio_choice_without_option():
    ont = ontology(classifications=[radio("weather", "sunny", "rainy")])
    assert findings(image(choices("weather", "sunny", "rainy", "night")), ont) == errors(
        ("ls-unmapped-choice",
         "Label Studio choice 'night' of control 'weather' has no Labelbox option"))


def test_shared_per_region_choice_missing_under_one_tool():
    ont = ontology([bbox("car", radio("occluded", "yes", "no", "partly")),
                    bbox("person", radio("occluded", "yes", "no"))])
    config = image(rects("car", "person"), choices("occluded", "yes", "no", "partly",
                                                    perRegion="true"))
    assert findings(config, ont) == errors(
        ("ls-unmapped-choice",
         "Label Studio choice 'partly' of control 'occluded' has no Labelbox option in "
         "'occluded' nested under tool 'person'"))


def test_answers_renamed_by_the_mapping_file_match():
    ont = ontology(classifications=[radio("weather", "Sunny Day", "Rainy Day")])
    mapping = {"classifications": [{"labelbox": "weather", "control": "weather",
                                    "answers": {"Sunny Day": "sunny", "Rainy Day": "rainy"}}]}
    assert findings(image(choices("weather", "sunny", "rainy")), ont, mapping) == []


# ----- kind mismatches -----------------------------------------------------------------------

def test_polygon_feature_on_a_rectangle_control():
    ont = ontology([T(T.Type.POLYGON, "road")])
    assert findings(image(rects("road")), ont) == errors(
        ("kind-mismatch", "Labelbox tool 'road' is a polygon but Label Studio label 'road' is on "
                          "control 'label' (RectangleLabels)"))


def test_polyline_is_a_declared_loss_and_a_polygon_label_for_it_a_mismatch():
    ont = ontology([T(T.Type.LINE, "lane")])
    config = image('<PolygonLabels name="poly" toName="image"><Label value="lane"/>'
                   '</PolygonLabels>')
    assert findings(config, ont) == [
        ("warning", "unsupported", "Labelbox tool 'lane' (polyline) cannot be shown in Label "
                                   "Studio: it has no image polyline tool"),
        ("error", "kind-mismatch", "Label Studio label 'lane' of control 'poly' (PolygonLabels) "
                                   "is a polygon but Labelbox tool 'lane' is a polyline")]


def test_labels_shared_by_two_tools_need_both_kinds():
    config = image('<Labels name="label" toName="image"><Label value="car"/></Labels>',
                   '<Rectangle name="r" toName="image"/><Polygon name="p" toName="image"/>')
    assert findings(config, ontology([bbox("car")])) == errors(
        ("kind-mismatch", "Label Studio label 'car' of control 'label' (Labels + Polygon) is a "
                          "polygon but Labelbox tool 'car' is a bbox"))


@pytest.mark.parametrize("question, control, message", [
    (checklist("tags", "a", "b"), choices("tags", "a", "b"),
     "Labelbox classification 'tags' is checklist (multiple answers) but Label Studio control "
     "'tags' is single-choice"),
    (radio("weather", "sunny"), choices("weather", "sunny", choice="multiple"),
     "Labelbox classification 'weather' is radio (one answer) but Label Studio control "
     "'weather' is multiple-choice"),
    (text("note"), choices("note", "a"),
     "Labelbox classification 'note' is text but Label Studio control 'note' is single-choice"),
    (radio("weather", "sunny"), '<TextArea name="weather" toName="image"/>',
     "Labelbox classification 'weather' is radio (one answer) but Label Studio control "
     "'weather' is TextArea"),
])
def test_classification_kind_mismatch(question, control, message):
    assert findings(image(control), ontology(classifications=[question])) == errors(
        ("kind-mismatch", message))


def test_text_may_be_a_number_or_a_rating():
    ont = ontology(classifications=[text("count"), text("quality")])
    config = image('<Number name="count" toName="image"/>',
                   '<Rating name="quality" toName="image"/>')
    assert findings(config, ont) == []


# ----- nesting mismatches --------------------------------------------------------------------

def test_per_region_classification_on_a_global_control():
    ont = ontology([bbox("car", radio("occluded", "yes", "no"))])
    assert findings(image(rects("car"), choices("occluded", "yes", "no")), ont) == errors(
        ("nesting-mismatch", "Labelbox classification 'occluded' is nested under tool 'car' but "
                             "Label Studio control 'occluded' is not perRegion"))


def test_global_classification_on_a_per_region_control():
    ont = ontology([bbox("car")], [radio("weather", "sunny")])
    config = image(rects("car"), choices("weather", "sunny", perRegion="true"))
    assert findings(config, ont) == errors(
        ("nesting-mismatch", "Labelbox classification 'weather' is global but Label Studio "
                             "control 'weather' is perRegion"))


NESTED = [radio("weather", "sunny", "rainy", rainy=[radio("rain_intensity", "light", "heavy")])]


def test_nested_classification_whose_control_has_no_parent():
    config = image(choices("weather", "sunny", "rainy"),
                   choices("rain_intensity", "light", "heavy"))
    assert findings(config, ontology(classifications=NESTED)) == errors(
        ("nesting-mismatch", "Labelbox classification 'rain_intensity' is nested under "
                             "'weather' = 'rainy' but Label Studio control 'rain_intensity' has "
                             "no visibleWhen parent"))


def test_nested_classification_under_another_choice():
    config = image(choices("weather", "sunny", "rainy"),
                   choices("rain_intensity", "light", "heavy", visibleWhen="choice-selected",
                           whenTagName="weather", whenChoiceValue="sunny"))
    assert findings(config, ontology(classifications=NESTED)) == errors(
        ("nesting-mismatch", "Labelbox classification 'rain_intensity' is nested under "
                             "'weather' = 'rainy' but Label Studio control 'rain_intensity' is "
                             "shown when 'weather' = 'sunny'"))


def test_top_level_classification_nested_in_label_studio():
    ont = ontology(classifications=[radio("rain_intensity", "light", "heavy"),
                                    radio("wet", "puddles")])
    config = image(choices("rain_intensity", "light", "heavy"),
                   choices("wet", "puddles", visibleWhen="choice-selected",
                           whenTagName="rain_intensity", whenChoiceValue="heavy"))
    assert findings(config, ont) == errors(
        ("nesting-mismatch", "Labelbox classification 'wet' is global but Label Studio control "
                             "'wet' is shown when 'rain_intensity' = 'heavy'"))


def test_parent_the_label_config_does_not_have():
    config = image(choices("weather", "sunny", "rainy"),
                   choices("rain_intensity", "light", "heavy", visibleWhen="choice-selected",
                           whenTagName="weather", whenChoiceValue="stormy"))
    assert findings(config, ontology(classifications=NESTED)) == errors(
        ("nesting-mismatch", "Labelbox classification 'rain_intensity' is nested under "
                             "'weather' = 'rainy' but Label Studio control 'rain_intensity' is "
                             "shown when 'weather' = 'stormy'"),
        ("nesting-mismatch", "Label Studio control 'rain_intensity' is shown when 'weather' = "
                             "'stormy', which is not a choice of a <Choices> control"))


def test_label_studio_control_placed_where_labelbox_has_no_such_question():
    ont = ontology([bbox("car")], [radio("weather", "sunny")])
    config = image(rects("car"), choices("weather", "sunny"),
                   choices("w2", "sunny", perRegion="true"))
    mapping = {"classifications": [{"labelbox": "weather", "control": "w2"}]}
    assert findings(config, ont, mapping) == errors(
        ("nesting-mismatch", "Label Studio control 'w2' is perRegion but Labelbox "
                             "classification 'weather' is global"))


def test_per_region_control_answerable_on_a_tool_without_that_question():
    ont = ontology([bbox("car", radio("occluded", "yes")), bbox("person")])
    config = image(rects("car", "person"), choices("occluded", "yes", perRegion="true"))
    assert findings(config, ont) == [
        ("warning", "nesting-mismatch", "Label Studio control 'occluded' (perRegion) can be "
                                        "answered on 'person' regions but Labelbox tool 'person' "
                                        "has no classification 'occluded'")]
    narrowed = image(rects("car", "person"), choices("occluded", "yes", perRegion="true",
                                                     visibleWhen="region-selected",
                                                     whenLabelValue="car"))
    assert findings(narrowed, ont) == []


# ----- ambiguity -----------------------------------------------------------------------------

def test_ambiguous_labels_and_controls():
    config = ('<View><Image name="a" value="$a"/><Image name="b" value="$b"/>'
              '<RectangleLabels name="x" toName="a"><Label value="Car"/></RectangleLabels>'
              '<RectangleLabels name="y" toName="b"><Label value="Car"/></RectangleLabels>'
              '<Choices name="w1" toName="a"><Choice value="sunny"/></Choices>'
              '<Choices name="w2" toName="b"><Choice value="sunny"/></Choices></View>')
    mapping = {"classifications": [{"labelbox": "weather", "control": "w1"},
                                   {"labelbox": "weather", "control": "w2"}]}
    ont = ontology([bbox("car")], [radio("weather", "sunny")])
    assert findings(config, ont, mapping) == errors(
        ("ambiguous", "Labelbox tool 'car' (bbox) matches 2 Label Studio labels: 'Car' of "
                      "control 'x', 'Car' of control 'y'"),
        ("ambiguous", "Labelbox classification 'weather' (radio) matches 2 Label Studio "
                      "controls: 'w1', 'w2'"))


# ----- relationships -------------------------------------------------------------------------

def test_relationships_both_ways():
    ont = ontology([bbox("car"), T(T.Type.RELATIONSHIP, "drives"),
                    T(T.Type.RELATIONSHIP, "owns")])
    config = image(rects("car"), '<Relations><Relation value="drives"/>'
                                 '<Relation value="next_to"/></Relations>')
    assert findings(config, ont) == errors(
        ("relationship-unmapped", "Labelbox relationship 'owns' has no <Relation value> in "
                                  "Label Studio"),
        ("relationship-unmapped", "Label Studio relation 'next_to' has no Labelbox "
                                  "relationship"))


def test_unlabelled_relations_need_the_mapping_file():
    ont = ontology([bbox("car"), T(T.Type.RELATIONSHIP, "drives")])
    assert findings(image(rects("car")), ont) == errors(
        ("relationship-unmapped", "Labelbox relationship 'drives' has no <Relation value> in "
                                  "Label Studio"))
    assert findings(image(rects("car")), ont, {"relations": [{"labelbox": "drives"}]}) == []


def test_relationship_with_nested_classifications_is_a_declared_loss():
    ont = ontology([bbox("car"), T(T.Type.RELATIONSHIP, "drives",
                                   classifications=[text("since")])])
    config = image(rects("car"), '<Relations><Relation value="drives"/></Relations>')
    assert findings(config, ont) == [
        ("warning", "nesting-mismatch", "Labelbox relationship 'drives' has nested "
                                        "classifications, which Label Studio relations cannot "
                                        "hold")]


# ----- declared losses, mapping problems, spelling -------------------------------------------

def test_unsupported_features_are_warnings():
    ont = ontology([T(T.Type.MESSAGE_RANKING, "rank")], [C(C.Type.GROUP, "group")])
    config = image('<EllipseLabels name="oval" toName="image"><Label value="x"/></EllipseLabels>')
    assert findings(config, ont) == [
        ("warning", "unsupported", "Labelbox tool 'rank' (message-ranking) is not supported"),
        ("warning", "unsupported", "Labelbox classification 'group' (group) is not supported"),
        ("warning", "unsupported", "Label Studio control 'oval' (EllipseLabels) is not "
                                   "supported: its annotations are not sent to Labelbox")]


def test_masks_map_to_brush_labels_both_ways():
    brush = '<BrushLabels name="mask" toName="image"><Label value="sky"/></BrushLabels>'
    per_mask = ('<Choices name="visibility" toName="image" perRegion="true"><Choice '
                'value="full"/></Choices>')
    ont = ontology([T(T.Type.RASTER_SEGMENTATION, "sky", classifications=[
        radio("visibility", "full")])])
    assert findings(image(brush, per_mask), ont) == []
    assert findings(image(rects("sky")), ont) == errors(
        ("kind-mismatch", "Labelbox tool 'sky' is a mask but Label Studio label 'sky' is on "
                          "control 'label' (RectangleLabels)"))
    assert findings(image(brush), ontology([T(T.Type.RASTER_SEGMENTATION, "sea")])) == errors(
        ("lb-unmapped-object", "Labelbox tool 'sea' (mask) has no Label Studio control"),
        ("ls-unmapped-label", "Label Studio label 'sky' of control 'mask' (BrushLabels) has no "
                              "Labelbox feature"))


def test_hypertext_spans_are_a_declared_loss():
    config = ('<View><HyperText name="html" value="$html"/><HyperTextLabels name="hl" '
              'toName="html"><Label value="PER"/></HyperTextLabels></View>')
    assert findings(config, ontology([T(T.Type.NER, "PER")])) == [
        ("warning", "unsupported", "Labelbox tool 'PER' (span) is on HyperText control 'hl': "
                                   "Labelbox character offsets cannot become HyperText spans")]


def test_mapping_file_problems_are_errors():
    mapping = {"objects": [{"labelbox": "car", "control": "nope"}],
               "classifications": [{"labelbox": "weather", "control": "weather",
                                    "answers": {"snowy": "snow"}}]}
    ont = ontology([bbox("car")], [radio("weather", "sunny")])
    assert findings(image(rects("car"), choices("weather", "sunny")), ont, mapping) == errors(
        ("mapping-problem", "mapping objects: no control 'nope' in the label config"),
        ("mapping-problem", "mapping classifications: control 'weather' has no choice 'snow'"))


def test_spelling_the_mapping_file_changes_is_a_warning():
    mapping = {"objects": [{"labelbox": "CAR", "control": "label", "label": "Car"}],
               "classifications": [{"labelbox": "Weather", "control": "weather"}]}
    ont = ontology([bbox("car")], [radio("weather", "sunny")])
    assert findings(image(rects("Car"), choices("weather", "sunny")), ont, mapping) == [
        ("warning", "name-spelling", "Label Studio label 'Car' of control 'label' sends 'CAR' to "
                                     "Labelbox, which spells it 'car'"),
        ("warning", "name-spelling", "Label Studio control 'weather' sends 'Weather' to "
                                     "Labelbox, which spells it 'weather'")]


def test_identical_findings_are_reported_once():
    ont = ontology([bbox("car", radio("occluded", "yes", "no", "maybe")),
                    bbox("person", radio("occluded", "yes", "no", "maybe"))])
    config = image(rects("car", "person"), choices("occluded", "yes", "no", perRegion="true"))
    assert findings(config, ont) == errors(
        ("lb-unmapped-option",
         "Labelbox option 'maybe' of 'occluded' has no <Choice> in control 'occluded'"))


# ----- the ontology file ---------------------------------------------------------------------

def test_load_ontology_reads_the_sdk_shape(tmp_path):
    path = tmp_path / "ontology.json"
    path.write_text(json.dumps(image_ontology()))
    ont = load_ontology(path)
    assert [(f.name, f.kind, f.tool) for f in ont.objects][:4] == [
        ("car", "bbox", "rectangle"), ("person", "bbox", "rectangle"),
        ("bicycle", "bbox", "rectangle"), ("road", "polygon", "polygon")]
    assert ont.relationship_names == ("drives", "next_to")
    weather = ont.classifications[0]
    assert (weather.name, weather.kind, [o.name for o in weather.options]) == (
        "weather", "radio", ["sunny", "rainy"])
    assert weather.options[1].classifications[0].name == "rain_intensity"
    occluded = ont.objects[0].classifications[0]
    assert occluded.options[0].classifications[0].kind == "checklist"


def test_load_ontology_accepts_the_graphql_wrapping_legacy_types_and_labels(tmp_path):
    raw = {"tools": [{"tool": "named-entity", "name": "PER", "classifications": []}],
           "classifications": [{"type": "dropdown", "instructions": "Country",
                                "options": [{"value": "fr", "label": "France"}]}]}
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"normalized": json.dumps(raw)}))
    ont = load_ontology(path)
    assert ont.objects[0].kind == "span"
    q = ont.classifications[0]
    assert (q.name, q.kind, q.type, q.options[0].name, q.options[0].value) == (
        "Country", "radio", "dropdown", "France", "fr")
    assert q.options[0].matches("FR") and q.options[0].matches("france")


@pytest.mark.parametrize("content, message", [
    ("{", "cannot read ontology: not JSON"),
    ("[]", "not a Labelbox ontology"),
    ('{"tools": [{"tool": "rectangle"}], "classifications": []}', "tools[0] has no name"),
    ('{"tools": [], "classifications": [{"type": "radio", "name": "q", "options": [{}]}]}',
     "classifications[0].options[0] has no label or value"),
])
def test_bad_ontology_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "o.json"
    path.write_text(content)
    with pytest.raises(OntologyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_ontology(path)
    with pytest.raises(OntologyError, match="cannot read ontology"):
        load_ontology(tmp_path / "missing.json")


# ----- run_checks: loading with precedence ---------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABELBRIDGE_DATA_DIR", str(tmp_path / "var"))
    return monkeypatch


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "image.xml"
    good.write_text(IMAGE_CONFIG)
    bad = tmp_path / "broken.xml"
    bad.write_text(image(rects("Car", "Truck")))
    ont = tmp_path / "ontology.json"
    ont.write_text(json.dumps(image_ontology()))
    return {"good": good, "bad": bad, "ontology": ont, "dir": tmp_path}


def test_explicit_arguments_win_over_settings(clean_env, files):
    settings = load_settings(LABELBRIDGE_LABEL_CONFIG=files["bad"],
                             LABELBRIDGE_ONTOLOGY=files["ontology"])
    assert not run_checks(settings).ok
    report = run_checks(settings, label_config_path=files["good"])
    assert report.ok and report.findings == []
    assert report.sources == {"label_config": str(files["good"]),
                              "ontology": str(files["ontology"]), "mapping": "none"}


def test_nothing_configured_says_what_to_set(clean_env):
    report = run_checks(load_settings())
    assert [(f.code, f.message) for f in report.findings] == [
        ("not-configured", "no Label Studio label config: pass --label-config PATH or set "
                           "LABELBRIDGE_LABEL_CONFIG, or set LABEL_STUDIO_URL, "
                           "LABEL_STUDIO_API_KEY and LABEL_STUDIO_PROJECT_ID"),
        ("not-configured", "no Labelbox ontology: pass --ontology PATH or set "
                           "LABELBRIDGE_ONTOLOGY, or set LABELBOX_API_KEY and "
                           "LABELBOX_PROJECT_ID")]
    assert not report.ok


def test_label_studio_without_project_or_url(clean_env, files):
    s = load_settings(LABEL_STUDIO_URL="http://ls", LABEL_STUDIO_API_KEY="k",
                      LABELBRIDGE_ONTOLOGY=files["ontology"])
    assert [f.message for f in run_checks(s).findings] == [
        "no Label Studio label config: LABEL_STUDIO_URL is set but LABEL_STUDIO_PROJECT_ID is "
        "not (or pass --ls-project ID, or --label-config PATH)"]
    s = load_settings(LABELBRIDGE_ONTOLOGY=files["ontology"])
    assert [f.message for f in run_checks(s, ls_project=3).findings] == [
        "no Label Studio label config: --ls-project needs LABEL_STUDIO_URL and "
        "LABEL_STUDIO_API_KEY"]


def test_unreadable_inputs_are_findings(clean_env, files):
    d = files["dir"]
    (d / "bad.json").write_text("{")
    (d / "bad.xml").write_text("<View><Image")
    (d / "bad.yaml").write_text("objects: {a: 1}")
    s = load_settings()
    report = run_checks(s, label_config_path=files["good"], ontology_path=d / "bad.json")
    assert [f.code for f in report.findings] == ["unreadable"]
    assert report.findings[0].message.startswith(f"{d / 'bad.json'}: cannot read ontology: "
                                                 "not JSON")
    report = run_checks(s, label_config_path=d / "bad.xml", ontology_path=files["ontology"])
    assert [f.code for f in report.findings] == ["unreadable"]
    assert report.findings[0].message.startswith(f"{d / 'bad.xml'}: label config: cannot "
                                                 "parse")
    report = run_checks(s, files["good"], files["ontology"], d / "bad.yaml")
    assert [(f.code, f.message) for f in report.findings] == [
        ("unreadable", f"{d / 'bad.yaml'}: 'objects' must be a list")]


def test_mapping_problems_are_reported_even_without_an_ontology(clean_env, files):
    d = files["dir"]
    (d / "m.yaml").write_text("objects: [{labelbox: car, control: nope}]\n")
    report = run_checks(load_settings(), files["good"], mapping_path=d / "m.yaml")
    assert [f.code for f in report.findings] == ["not-configured", "mapping-problem"]


# ----- the command ---------------------------------------------------------------------------

runner = CliRunner()


def test_cli_exit_0_when_everything_maps(clean_env, files):
    result = runner.invoke(app, ["doctor", "--label-config", str(files["good"]),
                                 "--ontology", str(files["ontology"])])
    assert result.exit_code == 0, result.output
    assert "everything maps" in result.stdout and result.stderr == ""   # a result: stdout


def test_cli_exit_1_and_json_on_stdout(clean_env, files):
    clean_env.setenv("LABELBRIDGE_ONTOLOGY", str(files["ontology"]))
    result = runner.invoke(app, ["doctor", "--label-config", str(files["bad"]), "--json"])
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["ok"] is False and out["errors"] == len(out["findings"]) > 0
    assert {"severity": "error", "code": "ls-unmapped-label",
            "message": "Label Studio label 'Truck' of control 'label' (RectangleLabels) has no "
                       "Labelbox feature"} in out["findings"]
    assert out["sources"]["ontology"] == str(files["ontology"])
    assert "ls-unmapped-label" in result.stderr and "errors" in result.stderr


def test_cli_warnings_alone_exit_0(clean_env, files):
    config = files["dir"] / "lane.xml"
    config.write_text(image(rects("car")))
    ont = files["dir"] / "lane.json"
    ont.write_text(json.dumps(normalized([bbox("car"), T(T.Type.LINE, "lane")])))
    result = runner.invoke(app, ["doctor", "--label-config", str(config), "--ontology", str(ont),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["findings"] == [
        {"severity": "warning", "code": "unsupported",
         "message": "Labelbox tool 'lane' (polyline) cannot be shown in Label Studio: it has no "
                    "image polyline tool"}]


def test_cli_exit_2_on_bad_usage_or_settings(clean_env, files):
    result = runner.invoke(app, ["doctor", "--label-config", str(files["dir"] / "nope.xml")])
    assert result.exit_code == 2 and "--label-config" in result.stderr
    result = runner.invoke(app, ["doctor", "--ls-project", "0"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["doctor", "--ls-project", "abc"])
    assert result.exit_code == 2
    clean_env.setenv("LABELBRIDGE_PORT", "0")
    result = runner.invoke(app, ["doctor", "--label-config", str(files["good"])])
    assert result.exit_code == 2 and "LABELBRIDGE_PORT" in result.stderr


def test_cli_missing_sources_exit_2(clean_env):
    """Nothing configured is a settings problem: 2, as --help says (was 1)."""
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 2
    assert [f["code"] for f in json.loads(result.stdout)["findings"]] == ["not-configured"] * 2


# ----- the server runs the same checks at start ----------------------------------------------

def test_runtime_logs_findings_at_start_and_still_starts(clean_env, files, caplog):
    from labelbridge.service.runtime import Runtime

    settings = load_settings(LABELBRIDGE_LABEL_CONFIG=files["bad"],
                             LABELBRIDGE_ONTOLOGY=files["ontology"])
    rt = Runtime(settings)
    try:
        with caplog.at_level(logging.INFO, logger="labelbridge.service.runtime"):
            rt.start()
        lines = [r for r in caplog.records if r.getMessage().startswith("doctor:")]
        assert lines and all(r.levelno == logging.WARNING for r in lines)
        assert any("Label Studio label 'Truck' of control 'label' (RectangleLabels) has no "
                   "Labelbox feature [ls-unmapped-label]" in r.getMessage() for r in lines)
    finally:
        rt.stop()


def test_runtime_checks_remote_sources_in_the_background(clean_env, files, caplog):
    from labelbridge.service.runtime import Runtime

    port = free_port()
    settings = load_settings(LABELBRIDGE_LABEL_CONFIG=files["good"], LABELBOX_API_KEY="k",
                             LABELBOX_PROJECT_ID="p",
                             LABELBOX_ENDPOINT=f"http://127.0.0.1:{port}/graphql")
    rt = Runtime(settings)
    try:
        with caplog.at_level(logging.INFO, logger="labelbridge.service.runtime"):
            thread = rt.check_mapping(timeout=10)
            assert thread is not None
            thread.join(15)
        assert any("Labelbox is unreachable" in r.getMessage() and "[unreachable]"
                   in r.getMessage() for r in caplog.records)
    finally:
        rt.stop()


def test_runtime_skips_the_checks_without_both_sources(clean_env, files):
    from labelbridge.service.runtime import Runtime

    rt = Runtime(load_settings(LABELBRIDGE_LABEL_CONFIG=files["good"]))
    try:
        assert rt.check_mapping() is None
    finally:
        rt.stop()


def test_report_json_shape():
    from labelbridge.tools.doctor import Report

    r = Report([Finding("warning", "unsupported", "m")], {"label_config": "x"})
    assert r.ok and r.as_dict() == {"ok": True, "errors": 0, "warnings": 1,
                                    "sources": {"label_config": "x"},
                                    "findings": [{"severity": "warning", "code": "unsupported",
                                                  "message": "m"}]}


# ----- the documented example ----------------------------------------------------------------

def test_the_documented_mapping_example_maps_fully():
    """configs/README.md: image-detection.xml + mapping.example.yaml against an ontology whose
    names differ (Vehicle, "Is occluded?", "Weather conditions" = "Rain" > ...)."""
    root = Path(__file__).resolve().parents[2] / "configs"
    config, example = root / "image-detection.xml", root / "mapping.example.yaml"

    def per_box():
        return [radio("Is occluded?", "Yes", "No"),
                checklist("Vehicle state", "Parked", "In motion", "Motion blur"),
                text("Comment")]

    ont = ontology([bbox(n, *per_box()) for n in ("Vehicle", "Pedestrian", "Bike")]
                   + [T(T.Type.RELATIONSHIP, "is driving"), T(T.Type.RELATIONSHIP, "next to")],
                   [radio("Weather conditions", "Sunny", "Rain", "Night time", Rain=[
                       radio("How heavy is the rain?", "Light", "Heavy")])])
    m = Mapping(config.read_text(), Overrides.load(example), ont.names())
    assert check(m, ont) == []
    unmapped = check(Mapping(config.read_text(), None, ont.names()), ont)
    assert "Labelbox tool 'Vehicle' (bbox) has no Label Studio control" in [
        f.message for f in unmapped]
