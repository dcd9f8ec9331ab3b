"""Label Studio results -> Labelbox: damaged results never raise and name the region and field;
spans are checked against the task text; pixel values come back at the documented precision."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from labelbridge.labelbox.ndjson import to_ndjson
from labelbridge.labelstudio.mapping import Mapping
from labelbridge.labelstudio.results import ResultReader, ResultWriter
from labelbridge.model.regions import Box, DataRowRef, Region, TaskRegions
from labelbridge.model.report import ConversionReport

from tests.helpers import IMAGE_CONFIG, TEXT_CONFIG
from tests.unit.test_results_check import JUNK, VALID, _damage

IMAGE = Mapping(IMAGE_CONFIG)
TEXT = Mapping(TEXT_CONFIG)
REF = DataRowRef(id="cdatarow00000000000000001")


def read(mapping, result, text=None):
    report = ConversionReport()
    tr = ResultReader(mapping, report).read(result, REF, task_text=text)
    return tr, report


def span(start, end, text=None, rid="s"):
    value = {"start": start, "end": end, "labels": ["PER"]}
    if text is not None:
        value["text"] = text
    return {"id": rid, "from_name": "label", "to_name": "text", "type": "labels", "value": value}


def test_a_span_past_the_end_of_the_text_is_reported_not_sent():
    tr, report = read(TEXT, [span(4, 40, rid="past"), span(0, 3, rid="ok")], "Ada was here")
    assert [r.id for r in tr.regions] == ["ok"]
    (loss,) = report.examples
    assert (loss.reason, loss.region, loss.field) == ("the span ends past the end of the text",
                                                      "past", "value.end")
    (line,) = to_ndjson(tr)
    assert line["location"] == {"start": 0, "end": 2}


def test_value_text_differing_from_the_slice_is_reported_and_the_offsets_kept():
    text = "Berlin,  Germany"
    tr, report = read(TEXT, [span(0, 16, "Berlin, Germany")], text)  # LS collapsed the spaces
    assert [(r.shape.start, r.shape.end) for r in tr.regions] == [(0, 16)]
    (loss,) = report.examples
    assert loss.field == "value.text" and "offsets were sent" in loss.reason


def test_a_url_text_is_not_checked_as_the_text():
    config = TEXT_CONFIG.replace('value="$text"', 'value="$text" valueType="url"')
    from labelbridge.labelstudio.tasks import task_text
    assert task_text({"text": "https://x/doc.txt"}, Mapping(config)) is None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["image", "text"]), st.data())
def test_random_damage_never_raises_and_names_the_region(name, data):
    mapping = IMAGE if name == "image" else TEXT
    result = _damage(VALID[name], data)
    if data.draw(st.booleans()):
        result = data.draw(JUNK.filter(lambda v: v is not ...)) if data.draw(st.booleans()) \
            else result
    tr, report = read(mapping, result, data.draw(st.sampled_from([None, "Ada was here"])))
    to_ndjson(tr, report)
    for loss in report.examples:
        assert loss.data_row == REF.id and loss.reason


def test_a_box_round_trips_to_the_same_pixels():
    tr = TaskRegions(REF, (Region("c1", "Car", Box(1234.5678, 320.0, 100.1, 7.0)),),
                     width=1707, height=2560)
    result = ResultWriter(IMAGE, ConversionReport()).write(tr)
    back, report = read(IMAGE, copy.deepcopy(result))
    (line,) = to_ndjson(back)
    assert report.lossless
    assert line["bbox"] == {"left": 1234.5678, "top": 320.0, "width": 100.1, "height": 7.0}
