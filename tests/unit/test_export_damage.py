"""Damaged Labelbox rows: every unreadable field is a loss naming the data row, the feature id and
the field path, and never costs another object or row; NER offsets checked against the text and
``token`` (code points or UTF-16); every relationship shape Labelbox exports."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelbridge.labelbox.export import Selection, compact_row, task_regions
from labelbridge.labelbox.shapes import utf16_to_code_points
from labelbridge.model.regions import Box, KeyPoint, Polygon, Span
from labelbridge.model.report import ConversionReport

from tests.helpers import DATA_ROW, bbox, damage_export_row, export_row, radio

BAD_VALUES = {"missing": ..., "null": None, "a string": "12", "NaN": math.nan,
              "infinite": math.inf, "a boolean": True, "an object": {"x": 1}}


def convert(row, report=None):
    report = report if report is not None else ConversionReport()
    picked = compact_row(row, Selection())
    assert picked is not None
    return task_regions(picked[1], report), report


def damaged(value, key, bad):
    out = copy.deepcopy(value)
    if bad is ...:
        del out[key]
    else:
        out[key] = bad
    return out


def polygon(fid, pts):
    return {"feature_id": fid, "name": "road", "annotation_kind": "ImagePolygon", "polygon": pts}


def entity(fid, start, end, token=None):
    loc = {"start": start, "end": end}
    if token is not None:
        loc["token"] = token
    return {"feature_id": fid, "name": "PER", "annotation_kind": "TextEntity", "location": loc}


def text_row(objects, text):
    row = export_row(objects, width=None, row_data=text)
    row["media_attributes"] = {"mime_type": "text/plain"}
    return row


GEOMETRY_CASES = [
    # (object, path of the damaged dict inside the object, key, field named in the loss)
    (bbox("cbad", "Car", 1, 2, 3, 4), ("bounding_box",), "height", "objects[0].bounding_box.height"),
    (bbox("cbad", "Car", 1, 2, 3, 4), ("bounding_box",), "left", "objects[0].bounding_box.left"),
    (polygon("cbad", [{"x": 0, "y": 0}, {"x": 5, "y": 0}, {"x": 5, "y": 5}]), ("polygon", 1), "y",
     "objects[0].polygon[1].y"),
    ({"feature_id": "cbad", "name": "nose", "point": {"x": 1, "y": 2}}, ("point",), "x",
     "objects[0].point.x"),
    (entity("cbad", 0, 3, "Ada "), ("location",), "end", "objects[0].location.end"),
]


@pytest.mark.parametrize("obj, where, key, field", GEOMETRY_CASES,
                         ids=[c[3] for c in GEOMETRY_CASES])
@pytest.mark.parametrize("what", list(BAD_VALUES))
def test_a_damaged_geometry_field_is_a_loss_naming_row_feature_and_field(obj, where, key, field,
                                                                         what):
    broken = copy.deepcopy(obj)
    parent = broken
    for step in where:
        parent = parent[step]
    if BAD_VALUES[what] is ...:
        del parent[key]
    else:
        parent[key] = BAD_VALUES[what]
    good = bbox("cgood", "Car", 10, 10, 5, 5)
    tr, report = convert(export_row([broken, good]))
    assert [r.id for r in tr.regions] == ["cgood"]          # the other object still converts
    (loss,) = report.examples
    assert (loss.data_row, loss.region, loss.field) == (DATA_ROW, "cbad", field)
    assert loss.feature == obj["name"] and loss.reason


def test_a_malformed_row_costs_only_itself():
    rows = [export_row([bbox("c1", "Car", 0, 0, 1, 1)], data_row_id=f"cdr{i}") for i in range(3)]
    rows[1]["experiments"] = ["not", "an", "object"]               # no label to select
    rows[2]["media_attributes"] = {"width": "wide", "height": 480}
    report = ConversionReport()
    picked = [compact_row(r, Selection()) for r in rows]
    assert picked[1] is None
    tr = task_regions(picked[2][1], report)
    assert tr.width is None and tr.regions[0].shape == Box(0, 0, 1, 1)
    (loss,) = report.examples
    assert (loss.data_row, loss.field) == ("cdr2", "media_attributes.width")


# ----- random damage ------------------------------------------------------------------------

def _row(i):
    return export_row([bbox(f"cbox{i}", "Car", 1.5, 2, 30, 40, confidence=0.5,
                            classifications=[radio(f"cocc{i}", "occluded", "yes")]),
                       polygon(f"cpol{i}", [{"x": 0, "y": 0}, {"x": 9, "y": 0}, {"x": 9, "y": 9},
                                            {"x": 0, "y": 0}]),
                       {"feature_id": f"cpt{i}", "name": "nose", "point": {"x": 3, "y": 4}}],
                      [radio(f"cw{i}", "weather", "rainy",
                             [radio(f"ci{i}", "rain_intensity", "heavy")])],
                      [{"feature_id": f"crel{i}", "name": "drives", "source": f"cbox{i}",
                        "target": f"cpt{i}", "unidirectional": True}],
                      data_row_id=f"cdatarow{i:017d}")


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                      st.integers(), max_size=2),
                 st.just(...))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_damage_never_raises_names_the_row_and_never_costs_another_row(data):
    rows = [_row(i) for i in range(3)]
    victim = rows[1]
    damage_export_row(victim, data.draw(st.integers(1, 3)),
                      lambda places: data.draw(st.sampled_from(places)), lambda: data.draw(JUNK))
    report = ConversionReport()
    converted = []
    for row in rows:
        picked = compact_row(row, Selection())
        converted.append(task_regions(picked[1], report) if picked else None)
    for i in (0, 2):   # the intact rows convert completely
        tr = converted[i]
        assert {r.id for r in tr.regions} == {f"cbox{i}", f"cpol{i}", f"cpt{i}"}
        assert len(tr.relations) == 1 and tr.classifications[0].answers[0].name == "rainy"
    for loss in report.examples:   # every loss is of the damaged row, and says where
        assert loss.data_row == rows[1]["data_row"]["id"] and loss.reason
        assert loss.field or loss.region or loss.detail


# ----- NER ----------------------------------------------------------------------------------

def test_an_entity_past_the_end_of_the_text_is_reported_not_emitted():
    tr, report = convert(text_row([entity("cper", 4, 40), entity("cok", 0, 2)], "Ada was here"))
    assert [r.id for r in tr.regions] == ["cok"]
    (loss,) = report.examples
    assert loss.reason == "the span ends past the end of the text"
    assert (loss.region, loss.field) == ("cper", "objects[0].location")


def test_token_matching_code_points_is_used_as_is():
    text = "I 🙂 like Ada"
    start = text.index("Ada")
    tr, report = convert(text_row([entity("cper", start, start + 2, "Ada")], text))
    assert report.lossless and tr.regions[0].shape == Span(start, start + 3, "Ada")


def test_token_matching_the_utf16_reading_is_converted_to_code_points():
    text = "I 🙂 like Ada"                 # the emoji is 2 UTF-16 code units, 1 code point
    start16 = len(text[:text.index("Ada")].encode("utf-16-le")) // 2
    tr, report = convert(text_row([entity("cper", start16, start16 + 2, "Ada")], text))
    assert report.lossless
    span = tr.regions[0].shape
    assert text[span.start:span.end] == "Ada" and span.start == text.index("Ada")


def test_token_matching_neither_reading_is_reported():
    tr, report = convert(text_row([entity("cper", 0, 2, "Bob")], "Ada was here"))
    assert tr.regions == ()
    (loss,) = report.examples
    assert "neither as code points nor as UTF-16" in loss.reason and "'Bob'" in loss.detail


def test_without_the_text_a_token_in_utf16_units_is_reported():
    obj = entity("cper", 0, 2, "🙂a")        # 2 code points, 3 UTF-16 code units
    tr, report = convert(export_row([obj], width=None, row_data="https://x/doc.txt"))
    assert tr.regions == ()
    assert "UTF-16" in report.examples[0].reason


@given(st.text(alphabet="ab🙂é𝄞 ", min_size=1, max_size=30), st.data())
def test_utf16_offsets_map_back_to_code_points(text, data):
    i = data.draw(st.integers(0, len(text)))
    units = len(text[:i].encode("utf-16-le")) // 2
    assert utf16_to_code_points(text, units) == i


# ----- relationships ------------------------------------------------------------------------

RELATION_SHAPES = {
    "export-v2, feature ids": {"source": "ca", "target": "cb", "unidirectional": True},
    "export-v2, bidirectional": {"source": "ca", "target": "cb", "unidirectional": False},
    "objects with feature_id": {"source": {"feature_id": "ca"}, "target": {"feature_id": "cb"},
                                "type": "unidirectional"},
    "legacy data.source/target": {"featureId": "cr", "title": "drives",
                                  "data": {"source": "ca", "target": "cb"},
                                  "relationshipType": "unidirectional"},
    "legacy text start/end ids": {"data": {"startFeatureId": "ca", "endFeatureId": "cb"},
                                  "relationshipType": "bidirectional"},
}


@pytest.mark.parametrize("shape", list(RELATION_SHAPES))
def test_every_relationship_shape_is_read(shape):
    rel = {"name": "drives", **RELATION_SHAPES[shape]}
    tr, report = convert(export_row([bbox("ca", "Person", 0, 0, 1, 1),
                                     bbox("cb", "Car", 1, 1, 1, 1)], relationships=[rel]))
    assert report.lossless
    (r,) = tr.relations
    assert (r.source, r.target, r.name) == ("ca", "cb", "drives")
    want_bi = "bidirectional" in shape or RELATION_SHAPES[shape].get("relationshipType") == \
        "bidirectional"
    assert r.bidirectional is want_bi


@pytest.mark.parametrize("rel, reason, field", [
    ({"source": "ca"}, "no feature id of the related object", "relationships[0].data.target"),
    ({"source": "ca", "target": 7}, "no feature id of the related object",
     "relationships[0].target"),
    ({"source": "ca", "target": "cgone"}, "the related object was not converted or is not in "
     "this label", "relationships[0].target"),
    ("drives", "not an object", "relationships[0]"),
])
def test_an_unreadable_relationship_says_why(rel, reason, field):
    item = {"name": "drives", **rel} if isinstance(rel, dict) else rel
    tr, report = convert(export_row([bbox("ca", "Person", 0, 0, 1, 1)], relationships=[item]))
    assert tr.relations == ()
    (loss,) = report.examples
    assert (loss.reason, loss.field, loss.data_row) == (reason, field, DATA_ROW)


def test_pixels_are_rounded_to_the_documented_precision():
    tr, _ = convert(export_row([bbox("c1", "Car", 0.123456789, 320, 10.00000000001, 5),
                                polygon("c2", [{"x": 1 / 3, "y": 0}, {"x": 2, "y": 0},
                                               {"x": 2, "y": 2}]),
                                {"feature_id": "c3", "name": "nose",
                                 "point": {"x": 2 / 3, "y": 1}}]))
    assert tr.regions[0].shape == Box(0.1235, 320.0, 10.0, 5.0)
    assert tr.regions[1].shape == Polygon(((0.3333, 0.0), (2.0, 0.0), (2.0, 2.0)))
    assert tr.regions[2].shape == KeyPoint(0.6667, 1.0)


@pytest.mark.parametrize("size", [1e308, 2 ** 63 - 1, 2 ** 31, 1e12, 0.5, -640])
def test_an_implausible_media_size_is_a_loss_and_the_row_converts_without_it(size):
    row = export_row([bbox("c1", "Car", 0, 0, 1, 1)], data_row_id="cdr1")
    row["media_attributes"]["width"] = size
    report = ConversionReport()
    tr = task_regions(compact_row(row, Selection())[1], report)
    assert tr.width is None and tr.height == 480 and tr.regions[0].shape == Box(0, 0, 1, 1)
    (loss,) = report.examples
    assert (loss.data_row, loss.field) == ("cdr1", "media_attributes.width")
    assert "whole number of pixels" in loss.reason
