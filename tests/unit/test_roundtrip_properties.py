"""Properties of the full round trip:
Labelbox export row -> Label Studio prediction -> the same result posted back as an
annotation -> NDJSON. Ids are unchanged, uuids are uuid5 of the feature ids, geometry given at
the documented precision (``PIXEL_DIGITS`` decimals) comes back exactly (a top of 320 is 320, not
319.99999999999994), NER offsets survive the inclusive/exclusive switch, nesting survives to
depth 3."""

import string

import orjson
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from labelbridge.labelbox.export import Selection, compact_row, task_regions
from labelbridge.labelbox.ndjson import to_ndjson
from labelbridge.labelstudio.mapping import Mapping
from labelbridge.labelstudio.results import ResultReader, ResultWriter
from labelbridge.model.ids import ndjson_uuid
from labelbridge.model.regions import PIXEL_DIGITS
from labelbridge.model.report import ConversionReport

from tests.helpers import IMAGE_CONFIG, TEXT_CONFIG, export_row

MAPPING = Mapping(IMAGE_CONFIG)
TEXT_MAPPING = Mapping(TEXT_CONFIG)
cuids = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=24, max_size=24).map(
    lambda s: "c" + s)
sizes = st.integers(min_value=1, max_value=20000)
coord = st.floats(min_value=0, max_value=1, allow_nan=False)


def on_grid(v: float) -> float:
    return round(v, PIXEL_DIGITS)


def round_trip(row, mapping=MAPPING, ls_text=None):
    """Export row -> LS prediction result -> (as annotation) -> neutral -> NDJSON lines."""
    tr = task_regions(compact_row(row, Selection())[1])
    result = ResultWriter(mapping, ConversionReport()).write(tr)
    assert mapping.interface.validate_prediction({"result": result}, return_errors=True) == []
    annotation = orjson.loads(orjson.dumps(result))   # what Label Studio stores and sends back
    report = ConversionReport()
    back = ResultReader(mapping, report).read(annotation, tr.data_row, task_text=ls_text)
    return tr, result, back, to_ndjson(back, ConversionReport()), report


@st.composite
def boxes(draw):
    w, h = draw(sizes), draw(sizes)
    x0, x1 = sorted((on_grid(draw(coord) * w), on_grid(draw(coord) * w)))
    y0, y1 = sorted((on_grid(draw(coord) * h), on_grid(draw(coord) * h)))
    return w, h, (x0, y0, on_grid(x1 - x0), on_grid(y1 - y0))


@settings(max_examples=200, deadline=None)
@given(boxes(), cuids)
def test_box_geometry_and_ids_round_trip(box, fid):
    w, h, (left, top, bw, bh) = box
    row = export_row([{"feature_id": fid, "name": "Car", "bounding_box":
                       {"left": left, "top": top, "width": bw, "height": bh}}], width=w, height=h)
    tr, result, back, (line,), report = round_trip(row)
    assert report.lossless
    assert result[0]["id"] == back.regions[0].id == fid
    assert line["uuid"] == ndjson_uuid(fid)
    assert line["bbox"] == {"left": left, "top": top, "width": bw, "height": bh}


@settings(max_examples=150, deadline=None)
@given(sizes, sizes, st.lists(st.tuples(coord, coord), min_size=3, max_size=12, unique=True),
       cuids)
def test_polygon_and_points_round_trip(w, h, rel_points, fid):
    points = [{"x": on_grid(x * w), "y": on_grid(y * h)} for x, y in rel_points]
    assume(len({(p["x"], p["y"]) for p in points}) == len(points))
    row = export_row([{"feature_id": fid, "name": "road", "polygon": points + [points[0]]},
                      {"feature_id": fid[::-1], "name": "nose", "point": points[1]}],
                     width=w, height=h)
    _, _, back, lines, report = round_trip(row)
    assert report.lossless
    poly, point = lines
    assert poly["uuid"] == ndjson_uuid(fid) and point["uuid"] == ndjson_uuid(fid[::-1])
    assert len(poly["polygon"]) == len(points) + 1         # closed again for Labelbox
    assert poly["polygon"] == points + [points[0]]
    assert point["point"] == points[1]


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=string.ascii_letters + " .,", min_size=1, max_size=80), st.data(), cuids)
def test_ner_offsets_survive_inclusive_exclusive(text, data, fid):
    start = data.draw(st.integers(0, len(text) - 1))
    end_inclusive = data.draw(st.integers(start, len(text) - 1))
    token = text[start:end_inclusive + 1]
    row = export_row([{"feature_id": fid, "name": "PER",
                       "location": {"start": start, "end": end_inclusive, "token": token}}],
                     width=None)
    _, result, back, (line,), _ = round_trip(row, TEXT_MAPPING, ls_text=text)
    value = result[0]["value"]
    assert text[value["start"]:value["end"]] == token            # LS end exclusive
    assert line["location"] == {"start": start, "end": end_inclusive}  # Labelbox end inclusive


answers = st.sampled_from(["parked", "blurred"])


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["yes", "no"]), st.lists(answers, min_size=1, max_size=2, unique=True),
       st.sampled_from(["motion", "focus"]), st.sampled_from(["light", "heavy"]),
       st.sampled_from(["puddles", "flooded"]))
def test_nested_classifications_to_depth_three(occ, attrs, cause, intensity, wet):
    nested_attrs = {"name": "attributes", "checklist_answers": [
        {"name": a, "classifications": [{"name": "cause", "radio_answer": {"name": cause}}]
         if a == "blurred" else []} for a in attrs]}
    region = {"feature_id": "cbox00000000000000000000a", "name": "Car",
              "bounding_box": {"left": 1, "top": 1, "width": 5, "height": 5},
              "classifications": [{"name": "occluded", "radio_answer": {
                  "name": occ, "classifications": [nested_attrs] if occ == "yes" else []}}]}
    weather = {"feature_id": "cweather0000000000000000a", "name": "weather", "radio_answer": {
        "name": "rainy", "classifications": [{"feature_id": "cint", "name": "rain_intensity",
                                              "radio_answer": {"name": intensity,
                                                               "classifications": [
            {"feature_id": "cwet", "name": "wet", "radio_answer": {"name": wet}}]
            if intensity == "heavy" else []}}]}}
    _, _, back, lines, report = round_trip(export_row([region], [weather]))
    assert report.lossless
    box_line, weather_line = lines
    occluded = box_line["classifications"][0]
    assert occluded["answer"]["name"] == occ
    if occ == "yes":
        checked = occluded["answer"]["classifications"][0]["answer"]
        assert [a["name"] for a in checked] == attrs
        for a in checked:
            if a["name"] == "blurred":
                assert a["classifications"][0]["answer"]["name"] == cause   # depth 3
    inner = weather_line["answer"]["classifications"][0]["answer"]
    assert inner["name"] == intensity
    if intensity == "heavy":
        assert inner["classifications"][0]["answer"]["name"] == wet     # depth 3, global
    assert weather_line["uuid"] == ndjson_uuid("cweather0000000000000000a")


@settings(max_examples=50, deadline=None)
@given(cuids, cuids, st.booleans())
def test_relation_ids_resolve_and_conversion_is_deterministic(a, b, bi):
    if a == b:
        return
    row = export_row([{"feature_id": a, "name": "Person", "bounding_box":
                       {"left": 0, "top": 0, "width": 1, "height": 1}},
                      {"feature_id": b, "name": "Bicycle", "bounding_box":
                       {"left": 2, "top": 2, "width": 1, "height": 1}}],
                     relationships=[{"name": "drives", "source": a, "target": b,
                                     "unidirectional": not bi}])
    _, result, back, lines, _ = round_trip(row)
    (rel,) = [r for r in result if r["type"] == "relation"]
    ids = {r["id"] for r in result if "id" in r}
    assert rel["from_id"] in ids and rel["to_id"] in ids
    assert (back.relations[0].source, back.relations[0].target) == (a, b)
    assert back.relations[0].bidirectional is bi
    again = round_trip(orjson.loads(orjson.dumps(row)))
    assert again[1] == result and again[3] == lines       # same input -> same ids and bytes
