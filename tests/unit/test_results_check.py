"""``PredictionCheck`` gives exactly ``LabelInterface.validate_prediction``'s verdicts (the SDK is
the oracle), on the results our writer produces and on random damage to them."""

from __future__ import annotations

import copy
import math
import pickle

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from label_studio_sdk.label_interface import LabelInterface

from labelbridge.labelstudio.label_config import LabelConfig
from labelbridge.labelstudio.results import PredictionCheck

from tests.helpers import IMAGE_CONFIG, TEXT_CONFIG, json_places, put_junk

MERGED_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Rectangle name="box" toName="image"/>
  <Labels name="lab" toName="image"><Label value="Car"/><Label value="Van"/></Labels>
  <TextArea name="note" toName="image" perRegion="true"/>
</View>"""
CLASSIFY_CONFIG = (open("configs/image-classification.xml").read())

CONFIGS = {name: (LabelInterface(xml), PredictionCheck(LabelConfig.parse(xml)))
           for name, xml in (("image", IMAGE_CONFIG), ("text", TEXT_CONFIG),
                             ("merged", MERGED_CONFIG), ("classify", CLASSIFY_CONFIG))}
# as a prepare worker gets it: the table compiled again from the outline, the SDK parsed on use
PICKLED = {name: pickle.loads(pickle.dumps(check)) for name, (_, check) in CONFIGS.items()}

BOX = {"x": 10.0, "y": 20.5, "width": 30, "height": 40.25, "rotation": 0}
VALID = {
    "image": [
        {"id": "a", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
         "original_width": 640, "original_height": 480,
         "value": {**BOX, "rectanglelabels": ["Car"]}},
        {"id": "a", "from_name": "occluded", "to_name": "image", "type": "choices",
         "value": {**BOX, "choices": ["yes"]}},
        {"id": "a", "from_name": "note", "to_name": "image", "type": "textarea",
         "value": {**BOX, "text": ["dent"]}},
        {"id": "b", "from_name": "poly", "to_name": "image", "type": "polygonlabels",
         "value": {"points": [[1, 2], [3.5, 4], [5, 99.9]], "closed": True,
                   "polygonlabels": ["road"]}},
        {"id": "c", "from_name": "kp", "to_name": "image", "type": "keypointlabels",
         "value": {"x": 1, "y": 2.5, "width": 0.3125, "keypointlabels": ["nose"]}},
        {"id": "g", "from_name": "weather", "to_name": "image", "type": "choices",
         "value": {"choices": ["rainy"]}},
        {"id": "h", "from_name": "count", "to_name": "image", "type": "number",
         "value": {"number": 3}},
        {"id": "i", "from_name": "quality", "to_name": "image", "type": "rating",
         "value": {"rating": 4}},
        {"from_id": "a", "to_id": "c", "type": "relation", "direction": "right",
         "labels": ["drives"]},
    ],
    "text": [
        {"id": "s", "from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 3, "text": "Ada", "labels": ["PER"]}},
        {"id": "t", "from_name": "sentiment", "to_name": "text", "type": "choices",
         "value": {"choices": ["positive"]}},
        {"id": "u", "from_name": "summary", "to_name": "text", "type": "textarea",
         "value": {"text": ["x", "y"]}},
    ],
    "merged": [
        {"id": "m", "from_name": "lab", "to_name": "image", "type": "rectanglelabels",
         "value": {**BOX, "rectanglelabels": ["Van"]}},
        {"id": "m", "from_name": "note", "to_name": "image", "type": "textarea",
         "value": {**BOX, "text": ["ok"]}},
    ],
    "classify": [
        {"id": "k", "from_name": "class", "to_name": "image", "type": "choices",
         "value": {"choices": ["cat"]}},
        {"id": "r", "from_name": "quality", "to_name": "image", "type": "rating",
         "value": {"rating": 5}},
    ],
}

JUNK = st.one_of(st.none(), st.booleans(), st.integers(-5, 500),
                 st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from([150.0, 100.0, 100.0000001, 360.5, -0.0, "12", "Car", "nose",
                                  "rainy", "labels", "choices", "image", "text", "relation",
                                  "rectanglelabels", "RectangleLabels", "polygonlabels",
                                  "rectangle", [], ["Car"], ["Van", "Car"], ["nope"], [1, 2],
                                  [[1, 2]], [[1, 2, 3]], {"x": 1}, "left", "bi", "a", "c"]),
                 st.just(...))


def _damage(result, data):
    result = copy.deepcopy(result)
    places = list(json_places(result))
    put_junk(result, data.draw(st.integers(0, 3)), lambda: data.draw(st.sampled_from(places)),
             lambda: data.draw(JUNK))
    if data.draw(st.booleans()):  # extra keys the value classes ignore, or the control's name
        item = data.draw(st.sampled_from(result)) if result else None
        if isinstance(item, dict) and isinstance(item.get("value"), dict):
            key = data.draw(st.sampled_from(["extra", "label", "note", "closed"]))
            item["value"][key] = data.draw(JUNK.filter(lambda v: v is not ...))
    return result


def test_the_writer_shapes_are_accepted_by_both():
    for name, result in VALID.items():
        li, check = CONFIGS[name]
        assert li.validate_prediction({"result": result}, return_errors=True) == []
        assert check.check({"result": result}) == []


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), st.data())
def test_fast_check_gives_the_sdks_verdicts_on_random_results(name, data):
    li, check = CONFIGS[name]
    result = _damage(VALID[name], data)
    prediction = {"result": result}
    if data.draw(st.booleans()):
        prediction["score"] = data.draw(st.one_of(st.floats(-1, 2), st.none(), st.just("x")))
    verdict = li.validate_prediction(prediction, return_errors=True)
    assert check.check(prediction) == verdict == PICKLED[name].check(prediction)
    for i, region in enumerate(r for r in result if isinstance(r, dict)):
        if region.get("type") != "relation" and isinstance(region.get("type"), str):
            assert check.region_errors(region, i, result) == li.validate_region(
                region, return_errors=True, region_index=i,
                context={"result": result, "region": region})


def test_a_rejection_carries_the_sdks_message():
    li, check = CONFIGS["image"]
    bad = copy.deepcopy(VALID["image"][:1])
    bad[0]["value"]["x"] = math.inf
    errors = check.check({"result": bad})
    assert errors and errors == li.validate_prediction({"result": bad}, return_errors=True)


RELATION_FIELD = st.one_of(JUNK, st.sampled_from(["a", "b", "c", "g", "zz", "right", "left",
                                                  "bi", "relation"]))


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "direction", "from_id", "to_id", "labels"]),
                       RELATION_FIELD.filter(lambda v: v is not ...)),
       st.booleans(), st.booleans())
def test_relations_get_the_sdks_verdicts(fields, typed, drop_a_region):
    """The relation check's common case (inline) against the SDK, on random relations."""
    li, check = CONFIGS["image"]
    relation = {**({"type": "relation"} if typed else {}), **fields}
    regions = [r for r in VALID["image"] if r.get("type") != "relation"]
    if drop_a_region:  # a relation to a region that is not there
        regions = regions[1:]
    prediction = {"result": regions + [relation]}
    verdict = li.validate_prediction(prediction, return_errors=True)
    assert check.check(prediction) == verdict == PICKLED["image"].check(prediction)
