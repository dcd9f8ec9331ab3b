"""Validating predictions fast, with exactly ``LabelInterface.validate_prediction``'s verdicts.

label-studio-sdk validates each region by finding its control, checking type and ``to_name``,
and instantiating the control's pydantic value class: about 12 µs a region, most of a prepared
prediction's cost. ``PredictionCheck`` reads the label config once into a table (per control,
object and result type: the value rule, from the control's labels) and accepts a region from
that table when its value is in the plain form our writer produces (finite numbers within the
bounds, lists of known labels...): one lookup and the value's own test, ~0.5 µs a region; a
relation, when its direction is known and both its ends are valid regions. Anything else, and
every rejection, is decided by ``LabelInterface`` itself, so the check can only be faster, never
more or less strict (``tests/unit/test_results_check.py`` proves the verdicts equal on random
results). The loop around the regions follows ``_validate_object_logic``
of label-studio-sdk 2.1.2 line by line, messages included. The table is compiled from a plain
outline of the controls, so a check pickles to a prepare worker without the SDK, which that
worker imports only if a row needs it (``labelstudio/label_config.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Final

from labelbridge.labelstudio.label_config import LabelConfig, TagOutline

if TYPE_CHECKING:
    from label_studio_sdk.label_interface import LabelInterface

Rule = Callable[[dict], bool]
_NUMBER: Final = (float, int)  # exactly these types (bool is neither), as the value classes accept


def _labels_in(allowed: frozenset[str]) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:  # the SDK accepts any labels when the control declares none
        if type(v) is not list:
            return False
        if len(v) == 1:
            x = v[0]
            return type(x) is str and (not allowed or x in allowed)
        return all(type(x) is str for x in v) and (not allowed or not v
                                                    or all(x in allowed for x in v))
    return ok


# The geometry rules run for most regions of a prediction: each number is tested inline, as
# finite (``v - v == 0``: nan for nan and the infinities) and within the bound.
def _rectangle(v: dict) -> bool:
    x: Any
    y: Any
    w: Any
    h: Any
    r: Any
    x, y, w, h, r = v.get("x"), v.get("y"), v.get("width"), v.get("height"), v.get("rotation")
    return (type(x) in _NUMBER and x - x == 0 and x <= 100
            and type(y) in _NUMBER and y - y == 0 and y <= 100
            and type(w) in _NUMBER and w - w == 0 and w <= 100
            and type(h) in _NUMBER and h - h == 0 and h <= 100
            and (r is None or type(r) in _NUMBER and r - r == 0 and r <= 360))


def _polygon(v: dict) -> bool:
    points = v.get("points")
    if type(points) is not list:
        return False
    for p in points:
        if type(p) is not list or len(p) != 2:
            return False
        x, y = p
        if not (type(x) in _NUMBER and x - x == 0 and x <= 100
                and type(y) in _NUMBER and y - y == 0 and y <= 100):
            return False
    return True


def _keypoint(v: dict) -> bool:
    x: Any = v.get("x")
    y: Any = v.get("y")
    return (type(x) in _NUMBER and x - x == 0 and x <= 100
            and type(y) in _NUMBER and y - y == 0 and y <= 100)


# geometry tool -> the plain values its pydantic value class accepts
_GEOMETRY: Final[dict[str, Rule]] = {"rectangle": _rectangle, "rectanglelabels": _rectangle,
                              "polygon": _polygon, "polygonlabels": _polygon,
                              "keypoint": _keypoint, "keypointlabels": _keypoint}


def _span_end(v: Any) -> bool:
    return type(v) in (int, float, str)


@dataclass(frozen=True, slots=True)
class _Control:
    tag: str                      # lower-case tag: the expected result type
    name: str
    to_name: frozenset[str]
    rule: Rule | None             # None: not compiled, LabelInterface decides every region
    merged: dict[str, Rule]       # <Labels> merged with a geometry tool: result type -> rule


class PredictionCheck:
    """``check(prediction)`` returns what ``validate_prediction(prediction, True)`` returns."""

    def __init__(self, config: LabelConfig) -> None:
        self.config = config
        self.objects = frozenset(o.name for o in config.objects)
        self.controls: dict[str, _Control] = {}
        for c in config.controls:  # unique names (the SDK keeps them in a dict)
            self.controls[c.name] = self._compile(c)
        # (from_name, to_name, type) -> (rule, whether a split-format partner must be looked
        # for): one lookup settles everything about a region but its value
        self.rules: dict[tuple[str, str, str], tuple[Rule, bool]] = {}
        for control in self.controls.values():
            typed = dict(control.merged)
            if control.rule is not None:
                typed[control.tag] = control.rule
            for to_name in control.to_name & self.objects:
                for rtype, rule in typed.items():
                    self.rules[(control.name, to_name, rtype)] = (
                        rule, control.tag == "labels" and rtype == "labels")

    def __reduce__(self) -> tuple:  # the rules are closures: compiled again from the outline
        return (PredictionCheck, (self.config,))

    @property
    def interface(self) -> LabelInterface:
        return self.config.interface

    def _compile(self, c: TagOutline) -> _Control:
        tag = c.tag.lower()
        labels = _labels_in(frozenset(c.labels))
        key = c.label_key
        rule: Rule | None = None
        geometry = _GEOMETRY.get(tag)
        if geometry is not None:
            if key is None:
                rule = geometry
            else:
                rule = (lambda g, k: lambda v: k in v and labels(v[k]) and g(v))(geometry, key)
        elif tag == "labels":
            rule = lambda v: ("labels" in v and labels(v["labels"]) and _span_end(v.get("start"))
                              and _span_end(v.get("end")))
        elif tag == "choices":
            rule = lambda v: "choices" in v and labels(v["choices"])
        elif tag == "textarea" and not c.labels:
            rule = lambda v: type(v.get("text")) is list and all(type(x) is str
                                                                  for x in v["text"])
        elif tag == "number" and not c.labels:
            rule = lambda v: type(v.get("number")) in (int, float) and math.isfinite(v["number"])
        elif tag == "rating" and str(c.attr.get("maxRating", 5)).isdigit():
            top = int(c.attr.get("maxRating", 5))
            rule = lambda v: type(v.get("rating")) is int and 0 <= v["rating"] <= top
        merged: dict[str, Rule] = {}
        if tag == "labels":  # the SDK's _merged_labels_geometry_control, read once
            valid = frozenset(c.labels)
            for sib in self.config.controls:
                g = _GEOMETRY.get(sib.tag.lower())
                if sib is not c and g and not sib.tag.endswith("Labels") \
                        and set(c.to_name) & set(sib.to_name):
                    t = f"{sib.tag.lower()}labels"
                    merged.setdefault(t, (lambda g, t: lambda v: (
                        type(v.get(t if t in v else "labels")) is list
                        and bool(v[t if t in v else "labels"]) and all(
                            type(x) is str and x in valid for x in v[t if t in v else "labels"])
                        and g(v)))(g, t))
        return _Control(tag, c.name, frozenset(c.to_name), rule, merged)

    def _plain(self, region: dict, result: list) -> bool:
        """True when the table alone shows the SDK accepts this region."""
        name, to_name = region.get("from_name"), region.get("to_name")
        rtype, value = region.get("type"), region.get("value")
        if type(name) is not str or type(to_name) is not str or type(rtype) is not str \
                or type(value) is not dict or name in value:
            return False
        entry = self.rules.get((name, to_name, rtype))
        if entry is None:
            return False
        rule, spans = entry
        if spans and any(_may_be_partner(r, region) for r in result):
            return False  # the SDK validates a split-format companion with its partner's class
        return rule(value)

    def region_errors(self, region: dict, index: int, result: list) -> list[str]:
        """What ``LabelInterface.validate_region`` says of one region ([] when valid)."""
        if self._plain(region, result):
            return []
        return self.interface.validate_region(region, return_errors=True, region_index=index,
                                              context={"result": result, "region": region})

    def check(self, prediction: Any) -> list[str]:
        errors: list[str] = []
        try:
            if "result" not in prediction:
                errors.append("Missing required field 'result'")
                return errors
            result = prediction.get("result")
            if not isinstance(result, list):
                errors.append("'result' must be a list")
                return errors
            if "score" in prediction:
                score = prediction["score"]
                if score is not None:
                    try:
                        score_float = float(score)
                        if not (0.0 <= score_float <= 1.0):
                            errors.append(f"Score must be between 0.00 and 1.00 inclusive, got "
                                          f"{score_float}")
                    except (ValueError, TypeError):
                        errors.append(f"Score must be a valid number, got {score}")
            regions, relations = [], []
            for i, region in enumerate(result):
                if not isinstance(region, dict):
                    errors.append(f"Region must be a dictionary. Got {type(region)}: {region}")
                    continue
                if region.get("type") != "relation":
                    if self._plain(region, result):  # region_errors(), its common case inline
                        regions.append(region)
                        continue
                    region_errors = self.region_errors(region, i, result)
                    errors.extend(region_errors)
                    if not region_errors:
                        regions.append(region)
                else:
                    relations.append((i, region))
            ids = _region_ids(regions) if relations else None
            for i, relation in relations:
                if ids is not None and _plain_relation(relation, ids):
                    continue  # validate_relation(), its common case inline
                relation_error = self.interface.validate_relation(
                    relation, regions, return_errors=True, relation_index=i)
                if relation_error:
                    errors.append(relation_error)
        except Exception as e:  # noqa: BLE001 -- the SDK's own loop does the same, verbatim
            errors.append(f"Unexpected error during validation: {str(e)}")
        return errors


def _region_ids(regions: list[dict]) -> frozenset | None:
    """The ids a relation may name (None: one is unhashable, the SDK reports it)."""
    try:
        return frozenset(r["id"] for r in regions if "id" in r)
    except TypeError:
        return None


_DIRECTIONS: Final = frozenset({"left", "right", "bi"})


def _plain_relation(relation: dict, ids: frozenset) -> bool:
    """True when the SDK's ``_validate_relation_logic`` finds nothing wrong (type is known to be
    "relation"): a known direction, and both ends among the valid regions."""
    d, a, b = relation.get("direction"), relation.get("from_id"), relation.get("to_id")
    return (type(d) is str and d in _DIRECTIONS and type(a) is str and a in ids
            and type(b) is str and b in ids)


def _may_be_partner(r: Any, region: dict) -> bool:
    """Whether the SDK's split-format lookup could pick (or trip over) ``r`` for ``region``."""
    if type(r) is not dict or r is region:
        return False
    rtype = r.get("type")
    if rtype and type(rtype) is not str:
        return True  # the SDK calls .lower() on it and reports the error
    return r.get("id") == region.get("id") and (rtype or "").lower() in _SPLIT_PARTNERS


_SPLIT_PARTNERS: Final = frozenset({"rectangle", "polygon", "ellipse", "keypoint", "brush",
                                    "bitmask", "vector"})
