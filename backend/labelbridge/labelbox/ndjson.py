"""Neutral regions -> labelbox SDK python types -> NDJSON (``NDJsonConverter.serialize``).

Labelbox facts handled here: geometry in absolute pixels, no rotated boxes; NER ``end`` is
inclusive; polygons are closed by the SDK; nested classifications go under
``ClassificationAnswer.classifications`` / ``Text.classifications`` (``classifications=`` on a
``ClassificationAnnotation`` is silently dropped by the SDK); ``dataRow`` is ``id`` or
``globalKey``; relationships import only through MAL.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import labelbox.types as lb
from labelbox.data.serialization import NDJsonConverter

from labelbridge.labelbox.video import VideoLineWriter
from labelbridge.model.ids import ndjson_uuid, relation_uuid
from labelbridge.model.regions import (Box, Classification, DataRowRef, KeyPoint, Polygon, Polyline,
                                       Region, Shape, Span, TaskRegions, VideoTrack)
from labelbridge.model.report import ConversionReport

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
    def __init__(self, report: ConversionReport, *, rotated_boxes: RotatedBoxes = "enclosing_box",
                 include_relations: bool = False) -> None:
        self.report = report
        self.rotated_boxes = rotated_boxes
        self.include_relations = include_relations

    def label(self, tr: TaskRegions) -> lb.Label:
        data = self._data_row(tr.data_row)
        row = tr.data_row.id or tr.data_row.global_key or "?"
        annotations: list = []
        objects: dict[str, lb.ObjectAnnotation] = {}
        for region in tr.regions:
            obj = self._object(region, row)
            if obj is not None:
                objects[region.id] = obj
                annotations.append(obj)
        for c in tr.classifications:
            ann = self._classification(c, row, top_level=True)
            if ann is not None:
                annotations.append(ann)
        for rel in tr.relations:
            if not self.include_relations:
                self.report.loss("relationship", "relationships import only through MAL "
                                 "(LABELBOX_IMPORT_KIND=mal), not as ground truth", rel.name, row)
                continue
            src, tgt = objects.get(rel.source), objects.get(rel.target)
            if src is None or tgt is None:
                self.report.loss("relationship", "a related object was not converted",
                                 rel.name, row)
                continue
            annotations.append(lb.RelationshipAnnotation(
                name=rel.name,
                value=lb.Relationship(source=src, target=tgt, type=(
                    lb.Relationship.Type.BIDIRECTIONAL if rel.bidirectional
                    else lb.Relationship.Type.UNIDIRECTIONAL)),
                extra={"uuid": relation_uuid(rel.source, rel.target, rel.name)}))
            self.report.ok("relationship")
        return lb.Label(data=data, annotations=annotations)

    @staticmethod
    def _data_row(ref: DataRowRef) -> lb.GenericDataRowData:
        if ref.id:
            return lb.GenericDataRowData(uid=ref.id)
        if ref.global_key:
            return lb.GenericDataRowData(global_key=ref.global_key)
        raise DataRowMissing("the task has neither data_row_id nor global_key, and no Labelbox "
                             "data row matched it in the prediction index")

    def _value(self, shape: Shape, name: str, row: str):
        if isinstance(shape, Box):
            if shape.rotation % 360 == 0:
                return lb.Rectangle(start=lb.Point(x=shape.left, y=shape.top),
                                    end=lb.Point(x=shape.left + shape.width,
                                                 y=shape.top + shape.height))
            corners = rotated_corners(shape)
            if self.rotated_boxes == "polygon":
                return lb.Polygon(points=[lb.Point(x=x, y=y) for x, y in corners])
            self.report.loss("bbox", "rotation dropped: sent the enclosing axis-aligned box "
                             "(set options.rotated_boxes: polygon to send a polygon)", name, row)
            xs, ys = [x for x, _ in corners], [y for _, y in corners]
            return lb.Rectangle(start=lb.Point(x=min(xs), y=min(ys)),
                                end=lb.Point(x=max(xs), y=max(ys)))
        if isinstance(shape, Polygon):
            return lb.Polygon(points=[lb.Point(x=x, y=y) for x, y in shape.points])
        if isinstance(shape, Polyline):
            return lb.Line(points=[lb.Point(x=x, y=y) for x, y in shape.points])
        if isinstance(shape, KeyPoint):
            return lb.Point(x=shape.x, y=shape.y)
        if isinstance(shape, Span):
            if shape.end <= shape.start:
                self.report.loss("ner", "empty text span", name, row)
                return None
            return lb.TextEntity(start=shape.start, end=shape.end - 1)  # Labelbox end inclusive
        raise AssertionError(f"unhandled shape {shape!r}")

    def _object(self, region: Region, row: str) -> lb.ObjectAnnotation | None:
        value = self._value(region.shape, region.name, row)
        if value is None:
            return None
        nested = [a for c in region.classifications
                  if (a := self._classification(c, row, top_level=False)) is not None]
        self.report.ok(region.shape.kind)
        return lb.ObjectAnnotation(name=region.name, value=value, classifications=nested,
                                   extra={"uuid": ndjson_uuid(region.id)})

    def _classification(self, c: Classification, row: str, top_level: bool
                        ) -> lb.ClassificationAnnotation | None:
        if c.kind == "text":
            if not c.text:
                self.report.loss("text", "empty text answer", c.name, row)
                return None
            value = lb.Text(answer=c.text)
        else:
            answers = []
            for a in c.answers:
                nested = [n for k in a.classifications
                          if (n := self._classification(k, row, top_level=False)) is not None]
                answers.append(lb.ClassificationAnswer(name=a.name, classifications=nested or None))
            if not answers:
                self.report.loss(c.kind, "no answer selected", c.name, row)
                return None
            value = lb.Radio(answer=answers[0]) if c.kind == "radio" else lb.Checklist(answer=answers)
        self.report.ok(c.kind)
        extra = {"uuid": ndjson_uuid(c.id)} if top_level and c.id else {}
        return lb.ClassificationAnnotation(name=c.name, value=value, extra=extra)


def to_ndjson(tr: TaskRegions, report: ConversionReport | None = None, *,
              rotated_boxes: RotatedBoxes = "enclosing_box",
              include_relations: bool = False) -> list[dict]:
    """NDJSON lines (dicts) for one task, as ``NDJsonConverter`` serializes them; video tracks
    and frame-ranged classifications are written by ``video.py`` (the SDK merges them)."""
    report = report if report is not None else ConversionReport()
    writer = LabelWriter(report, rotated_boxes=rotated_boxes, include_relations=include_relations)
    tracks = [r for r in tr.regions if isinstance(r.shape, VideoTrack)]
    framed = [c for c in tr.classifications if c.frames]
    video_lines: list[dict] = []
    if tracks or framed:
        data = writer._data_row(tr.data_row)
        row = tr.data_row.id or tr.data_row.global_key or "?"
        lines = VideoLineWriter({"id": data.uid} if data.uid else {"globalKey": data.global_key},
                                row, report)
        video_lines = [line for r in tracks if (line := lines.track_line(r)) is not None]
        video_lines += lines.classification_lines(framed)
        tr = replace(tr, regions=tuple(r for r in tr.regions
                                         if not isinstance(r.shape, VideoTrack)),
                     classifications=tuple(c for c in tr.classifications if not c.frames))
    label = writer.label(tr)
    if not label.annotations:
        return video_lines
    return list(NDJsonConverter.serialize([label])) + video_lines
