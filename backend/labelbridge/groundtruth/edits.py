"""How an annotation changed the prediction it was made from, region by region.

Pure, over neutral regions (pixels, end-exclusive spans, Labelbox names on both sides). Region
ids are stable (a prediction's region keeps its id in the annotation), so each predicted region
is found again by id, or is gone:

* ``accepted``: kept as predicted (geometry within ``TOLERANCE_PX``, same label, same
  attributes);
* ``moved``: its geometry changed; ``iou`` is the overlap with the prediction (intersection over
  union of the areas for boxes and polygons, of the characters for text spans; None for points
  and lines, which have no area);
* ``relabelled``: another label; ``attributes_changed``: its per-region answers changed (for a
  global classification: its answers);
* ``deleted``: not in the annotation; ``added``: in the annotation only (drawn by hand).

A region can be moved and relabelled at once; ``accepted`` excludes the other outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shapely.geometry import Polygon as ShapelyPolygon

from labelbridge.model.regions import (Box, Classification, KeyPoint, Polygon, Polyline, Region,
                                       Span, TaskRegions)

TOLERANCE_PX = 0.5  # a coordinate this close to the prediction did not move
OUTCOMES = ("accepted", "moved", "relabelled", "attributes_changed", "deleted", "added")


@dataclass(frozen=True)
class RegionEdit:
    region_id: str
    label: str                  # predicted label (the annotation's for an added region)
    kind: str                   # bbox, polygon, point, polyline, span, classification
    outcomes: frozenset[str]
    iou: float | None = None    # of a moved region, where it has an area or a length


def compare(served: TaskRegions, annotated: TaskRegions) -> list[RegionEdit]:
    """One edit per predicted region and per region added by hand, in prediction order."""
    mine = {r.id: r for r in annotated.regions}
    answers = {c.id: c for c in annotated.classifications if c.id}
    edits = [_region_edit(r, mine.get(r.id)) for r in served.regions]
    edits += [_classification_edit(c, answers.get(c.id)) for c in served.classifications if c.id]
    predicted = {r.id for r in served.regions} | {c.id for c in served.classifications if c.id}
    edits += [RegionEdit(r.id, r.name, r.shape.kind, frozenset({"added"}))
              for r in annotated.regions if r.id not in predicted]
    edits += [RegionEdit(c.id, c.name, "classification", frozenset({"added"}))
              for c in annotated.classifications if c.id and c.id not in predicted]
    return edits


def _region_edit(predicted: Region, kept: Region | None) -> RegionEdit:
    kind = predicted.shape.kind
    if kept is None:
        return RegionEdit(predicted.id, predicted.name, kind, frozenset({"deleted"}))
    outcomes = set()
    iou = None
    if not _same_place(predicted.shape, kept.shape):
        outcomes.add("moved")
        iou = overlap(predicted.shape, kept.shape)
    if kept.name != predicted.name:
        outcomes.add("relabelled")
    if _answers(kept.classifications) != _answers(predicted.classifications):
        outcomes.add("attributes_changed")
    return RegionEdit(predicted.id, predicted.name, kind, frozenset(outcomes or {"accepted"}),
                      iou)


def _classification_edit(predicted: Classification, kept: Classification | None) -> RegionEdit:
    if kept is None:
        outcome = "deleted"
    elif _answers((kept,)) != _answers((predicted,)):
        outcome = "attributes_changed"
    else:
        outcome = "accepted"
    return RegionEdit(predicted.id or "", predicted.name, "classification", frozenset({outcome}))


def _answers(classifications) -> tuple:
    """What a set of classifications says, without ids, scores or order."""
    return tuple(sorted(
        (c.name, c.kind, (c.text or "").strip(),
         tuple(sorted((a.name, _answers(a.classifications)) for a in c.answers)))
        for c in classifications))


# ----- geometry -----------------------------------------------------------------------------

def _points(shape) -> list[tuple[float, float]]:
    if isinstance(shape, Box):
        corners = [(0.0, 0.0), (shape.width, 0.0), (shape.width, shape.height),
                   (0.0, shape.height)]
        a = math.radians(shape.rotation)
        cos, sin = math.cos(a), math.sin(a)
        return [(shape.left + x * cos - y * sin, shape.top + x * sin + y * cos)
                for x, y in corners]
    if isinstance(shape, (Polygon, Polyline)):
        return list(shape.points)
    if isinstance(shape, KeyPoint):
        return [(shape.x, shape.y)]
    return []


def _same_place(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, Span):
        return (a.start, a.end) == (b.start, b.end)
    pa, pb = _points(a), _points(b)
    return len(pa) == len(pb) and all(math.dist(p, q) <= TOLERANCE_PX for p, q in zip(pa, pb))


def overlap(a, b) -> float | None:
    """Intersection over union: of areas (boxes, polygons), of characters (spans)."""
    if isinstance(a, Span) and isinstance(b, Span):
        inter = max(0, min(a.end, b.end) - max(a.start, b.start))
        union = max(a.end, b.end) - min(a.start, b.start)
        return inter / union if union > 0 else None
    if not (isinstance(a, (Box, Polygon)) and isinstance(b, (Box, Polygon))):
        return None
    if isinstance(a, Box) and isinstance(b, Box) and a.rotation == b.rotation == 0:
        w = max(0.0, min(a.left + a.width, b.left + b.width) - max(a.left, b.left))
        h = max(0.0, min(a.top + a.height, b.top + b.height) - max(a.top, b.top))
        union = a.width * a.height + b.width * b.height - w * h
        return w * h / union if union > 0 else None
    pa, pb = (ShapelyPolygon(_points(s)).buffer(0) for s in (a, b))  # buffer: fix bow-ties
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else None
