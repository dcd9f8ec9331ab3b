"""Neutral regions -> labelbox SDK python types -> NDJSON (``NDJsonConverter.serialize``).

Labelbox facts handled here: geometry in absolute pixels, no rotated boxes; NER ``end`` is
inclusive; polygons are closed by the SDK; nested classifications go under
``ClassificationAnswer.classifications`` / ``Text.classifications`` (``classifications=`` on a
``ClassificationAnnotation`` is silently dropped by the SDK); ``dataRow`` is ``id`` or
``globalKey``; relationships import only through MAL.

Each neutral shape kind has one entry in ``VALUES`` (shape kind -> function building the SDK
value); masks and video add theirs there. Features are named by their ``schemaId`` when it is
known (the neutral object's own, or the ``FeatureTable`` of the project's ontology), else by the
ontology's exact name, else by the name the neutral model carries. Geometry in the lines is
rounded to ``PIXEL_DIGITS`` decimals (the SDK computes width and height as differences), and
the SDK's ``schema_id`` key in nested answers is written ``schemaId``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable, Literal

import labelbox.types as lb
from labelbox.data.serialization import NDJsonConverter

from labelbridge.labelbox import masks
from labelbridge.labelbox.video import VideoLineWriter
from labelbridge.model.features import FeatureTable, Path
from labelbridge.model.ids import ndjson_uuid, relation_uuid
from labelbridge.model.regions import (PIXEL_DIGITS, Box, Classification, DataRowRef, Region,
                                       Shape, Span, TaskRegions, VideoTrack)
from labelbridge.model.report import ConversionReport, Reporter

RotatedBoxes = Literal["enclosing_box", "polygon"]


class DataRowMissing(ValueError):
    """The task names no Labelbox data row (no data_row_id and no global_key)."""


def rotated_corners(box: Box) -> list[tuple[float, float]]:
    """Corners of a box rotated clockwise (image y points down) about its top-left corner."""
    a = math.radians(box.rotation)
    cos, sin = math.cos(a), math.sin(a)
    out = []
    for dx, dy in ((0, 0), (box.width, 0), (box.width, box.height), (0, box.height)):
        out.append((box.left + dx * cos - dy * sin, box.top + dx * sin + dy * cos))
    return out


class LabelWriter:
    def __init__(self, report: Reporter, *, rotated_boxes: RotatedBoxes = "enclosing_box",
                 include_relations: bool = False, features: FeatureTable | None = None) -> None:
        self.report = report
        self.rotated_boxes = rotated_boxes
        self.include_relations = include_relations
        self.features = features if features is not None else FeatureTable()

    def _names(self, path: Path, name: str, schema_id: str | None) -> tuple[dict, str]:
        """The SDK keywords naming a feature, and its name as Labelbox spells it (the path of
        what is nested under it)."""
        sid, exact = self.features.naming(path, name, schema_id)
        return ({"feature_schema_id": sid} if sid else {"name": exact}), exact

    def label(self, tr: TaskRegions) -> lb.Label:
        data = self._data_row(tr.data_row)
        report = self.report.scope(data_row=tr.data_row.id or tr.data_row.global_key or "?")
        annotations: list = []
        objects: dict[str, lb.ObjectAnnotation] = {}
        for region in tr.regions:
            obj = self._object(region, report)
            if obj is not None:
                objects[region.id] = obj
                annotations.append(obj)
        for c in tr.classifications:
            ann = self._classification(c, report, ("classification",), top_level=True)
            if ann is not None:
                annotations.append(ann)
        for rel in tr.relations:
            if not self.include_relations:
                report.loss("relationship", "relationships import only through MAL "
                            "(LABELBOX_IMPORT_KIND=mal), not as ground truth", rel.name)
                continue
            src, tgt = objects.get(rel.source), objects.get(rel.target)
            if src is None or tgt is None:
                report.loss("relationship", "a related object was not converted", rel.name)
                continue
            # by name: the SDK (7.17) drops a relationship's schema id ("Schema id or name
            # are not set"), so the ontology's exact spelling is sent
            _, exact = self._names(("relationship", rel.name or ""), rel.name or "", None)
            annotations.append(lb.RelationshipAnnotation(
                name=exact, value=lb.Relationship(source=src, target=tgt, type=(
                    lb.Relationship.Type.BIDIRECTIONAL if rel.bidirectional
                    else lb.Relationship.Type.UNIDIRECTIONAL)),
                extra={"uuid": relation_uuid(rel.source, rel.target, rel.name)}))
            report.ok("relationship")
        return lb.Label(data=data, annotations=annotations)

    @staticmethod
    def _data_row(ref: DataRowRef) -> lb.GenericDataRowData:
        if ref.id:
            return lb.GenericDataRowData(uid=ref.id)
        if ref.global_key:
            return lb.GenericDataRowData(global_key=ref.global_key)
        raise DataRowMissing("the task has neither data_row_id nor global_key, and no Labelbox "
                             "data row matched it in the prediction index")

    def _value(self, shape: Shape, name: str, report: Reporter, rid: str):
        write = VALUES.get(shape.kind)
        if write is None:
            report.loss(shape.kind, "no Labelbox annotation type for this shape", name,
                        region=rid)
            return None
        return write(self, shape, name, report, rid)

    def _box(self, shape: Box, name: str, report: Reporter, rid: str):
        if shape.rotation % 360 == 0:
            return lb.Rectangle(start=lb.Point(x=shape.left, y=shape.top),
                                end=lb.Point(x=shape.left + shape.width,
                                             y=shape.top + shape.height))
        corners = rotated_corners(shape)
        if self.rotated_boxes == "polygon":
            return lb.Polygon(points=[lb.Point(x=x, y=y) for x, y in corners])
        report.loss("bbox", "rotation dropped: sent the enclosing axis-aligned box (set "
                    "options.rotated_boxes: polygon to send a polygon)", name, region=rid)
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        return lb.Rectangle(start=lb.Point(x=min(xs), y=min(ys)),
                            end=lb.Point(x=max(xs), y=max(ys)))

    @staticmethod
    def _span(shape: Span, name: str, report: Reporter, rid: str):
        if shape.end <= shape.start:
            report.loss("ner", "empty text span", name, region=rid)
            return None
        return lb.TextEntity(start=shape.start, end=shape.end - 1)  # Labelbox end inclusive

    def _object(self, region: Region, report: Reporter) -> lb.ObjectAnnotation | None:
        value = self._value(region.shape, region.name, report, region.id)
        if value is None:
            return None
        names, exact = self._names(("object", region.name), region.name, region.schema_id)
        nested = [a for c in region.classifications
                  if (a := self._classification(c, report, ("object", exact), False))]
        report.ok(region.shape.kind)
        return lb.ObjectAnnotation(**names, value=value, classifications=nested,
                                   extra={"uuid": ndjson_uuid(region.id)})

    def _classification(self, c: Classification, report: Reporter, parent: Path,
                        top_level: bool) -> lb.ClassificationAnnotation | None:
        names, exact = self._names(parent + (c.name,), c.name, c.schema_id)
        here = parent + (exact,)
        if c.kind == "text":
            if not c.text:
                report.loss("text", "empty text answer", c.name, region=c.id)
                return None
            value = lb.Text(answer=c.text)
        else:
            answers = []
            for a in c.answers:
                a_names, a_exact = self._names(here + (a.name,), a.name, a.schema_id)
                nested = [n for k in a.classifications
                          if (n := self._classification(k, report, here + (a_exact,), False))]
                answers.append(lb.ClassificationAnswer(**a_names, classifications=nested or None))
            if not answers:
                report.loss(c.kind, "no answer selected", c.name, region=c.id)
                return None
            value = lb.Radio(answer=answers[0]) if c.kind == "radio" else lb.Checklist(answer=answers)
        report.ok(c.kind)
        extra = {"uuid": ndjson_uuid(c.id)} if top_level and c.id else {}
        return lb.ClassificationAnnotation(**names, value=value, extra=extra)


# neutral shape kind -> the SDK value of an ObjectAnnotation (None: reported, not sent)
VALUES: dict[str, Callable[[LabelWriter, Any, str, Reporter, str], Any]] = {
    "bbox": LabelWriter._box,
    "polygon": lambda w, s, n, r, i: lb.Polygon(points=[lb.Point(x=x, y=y) for x, y in s.points]),
    "polyline": lambda w, s, n, r, i: lb.Line(points=[lb.Point(x=x, y=y) for x, y in s.points]),
    "point": lambda w, s, n, r, i: lb.Point(x=s.x, y=s.y),
    "span": lambda w, s, n, r, i: LabelWriter._span(s, n, r, i),
    "mask": masks.labelbox_value,
}
_GEOMETRY_KEYS = ("bbox", "polygon", "line", "point")


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, PIXEL_DIGITS) + 0.0  # + 0.0: no -0.0
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _schema_keys(value: Any) -> Any:
    """The SDK (7.17) writes ``"schema_id"`` instead of ``"schemaId"`` for classifications
    nested in an answer of a global classification; Labelbox reads ``schemaId`` only."""
    if isinstance(value, dict):
        return {("schemaId" if k == "schema_id" else k): _schema_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_schema_keys(v) for v in value]
    return value


def _finished(line: dict) -> dict:
    for key in _GEOMETRY_KEYS:
        if key in line:
            line[key] = _rounded(line[key])
    for key in ("classifications", "answer"):
        if key in line:
            line[key] = _schema_keys(line[key])
    return line


def to_ndjson(tr: TaskRegions, report: Reporter | None = None, *,
              rotated_boxes: RotatedBoxes = "enclosing_box", include_relations: bool = False,
              features: FeatureTable | None = None) -> list[dict]:
    """NDJSON lines (dicts) for one task, as ``NDJsonConverter`` serializes them; video tracks
    and frame-ranged classifications are written by ``video.py`` (the SDK merges them)."""
    report = report if report is not None else ConversionReport()
    writer = LabelWriter(report, rotated_boxes=rotated_boxes, include_relations=include_relations,
                         features=features)
    tracks = [r for r in tr.regions if isinstance(r.shape, VideoTrack)]
    framed = [c for c in tr.classifications if c.frames]
    video_lines: list[dict] = []
    if tracks or framed:
        data = writer._data_row(tr.data_row)
        row = tr.data_row.id or tr.data_row.global_key or "?"
        lines = VideoLineWriter({"id": data.uid} if data.uid else {"globalKey": data.global_key},
                                row, report, writer.features)  # type: ignore[arg-type]
        video_lines = [line for r in tracks if (line := lines.track_line(r)) is not None]
        video_lines += lines.classification_lines(framed)
        tr = replace(tr, regions=tuple(r for r in tr.regions
                                         if not isinstance(r.shape, VideoTrack)),
                     classifications=tuple(c for c in tr.classifications if not c.frames))
    label = writer.label(tr)
    if not label.annotations:
        return video_lines
    return [_finished(line) for line in NDJsonConverter.serialize([label])] + video_lines
