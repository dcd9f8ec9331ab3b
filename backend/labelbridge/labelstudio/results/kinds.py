"""One table row per Label Studio region kind: which result types carry it and how its value
reads and writes.

A ``ResultKind`` declares, for one neutral shape kind, the LS result types that carry its
geometry (a ``*labels`` type with its label key, and the label-less tool type), whether the value
is in percent of ``original_width/height``, and two pure functions: ``write(shape, size) ->
value geometry`` and ``read(value, size, text) -> Shape`` (raising ``ResultError`` with the field
and the reason). ``ResultWriter`` and ``ResultReader`` only dispatch through ``KINDS``; a new
kind (masks, video...) is a module with its ``ResultKind`` rows, listed in ``KINDS`` below.

Label Studio facts: percent values of ``original_width/height`` (rectangle x/y is the top-left
corner, rotation in degrees clockwise about it); polygons are open; a key point's ``width`` is
the radius the editor draws it with (see ``point_style``); ``Text`` span offsets are code points
with ``end`` exclusive, and ``value.text`` may legitimately differ from the slice in whitespace
(so it is reported, never rewritten).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Final

from labelbridge.labelstudio import video
from labelbridge.model.regions import (PIXEL_DIGITS, Box, KeyPoint, Mask, Polygon, Shape, Span,
                                      VideoTrack)
from labelbridge.model.rounding import fixed

# percent of the image size: keeps PIXEL_DIGITS exact for images < 10^6 px
PERCENT_DIGITS: Final = 8


class ResultError(ValueError):
    """A result value cannot be read; ``field`` is its path inside the result item."""

    def __init__(self, reason: str, field: str, detail: str | None = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.reason, self.field, self.detail = reason, field, detail


Size = tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class ResultKind:
    kind: str                          # neutral shape kind (model.regions.ShapeKind)
    labels_type: str                   # result type with labels
    tool_type: str | None              # result type of the label-less tool (None: none)
    image: bool                        # value in percent of original_width/height
    write: Callable[[Shape, Size], dict]
    read: Callable[[dict, Size, str | None], Shape]
    labels_key: str | None = None      # value key of the labels (default: the labels type;
                                       # e.g. "labels" for videorectangle)
    # Kinds whose results are more than a value (video: a keyframe sequence, answers asked per
    # track) read and write whole items instead; ``write``/``read`` are then unused:
    write_region: Callable[..., list[dict]] | None = None  # (writer, region, target, tr,
                                                            # report) -> result items
    read_item: Callable[..., Shape | None] | None = None   # (item, sizes, mapping, report,
                                                            # feature, task data) -> shape
    nest: Callable[[Shape, tuple], tuple[Shape, tuple]] | None = None  # where the region's
                                                            # answers go (video: each keyframe)
    style: Callable[[Any, Size], dict] | None = None  # (target, size) -> value fields the
                                                      # editor needs to draw the region

    @property
    def types(self) -> tuple[str, ...]:
        return (self.labels_type,) + ((self.tool_type,) if self.tool_type else ())

    @property
    def label_key(self) -> str:
        return self.labels_key or self.labels_type


def pct(v: float, total: float) -> float:
    return fixed(v / total * 100.0, PERCENT_DIGITS)


def _num(value: dict, key: str) -> float:
    if key not in value:
        raise ResultError("missing", f"value.{key}")
    v = value[key]
    if type(v) not in (int, float) or not math.isfinite(v):
        raise ResultError("not a finite number", f"value.{key}", repr(v))
    return float(v)


def _px(value: dict, key: str, total: float) -> float:
    return fixed(_num(value, key) / 100.0 * total, PIXEL_DIGITS)


def _size(size: Size) -> tuple[float, float]:
    if not size:
        raise ResultError("image size unknown (no original_width/height)", "original_width")
    return size


# ----- rectangles, polygons, key points (percent of the image) -------------------------------

def write_box(shape: Shape, size: Size) -> dict:
    w, h = _size(size)
    assert isinstance(shape, Box)
    sx, sy = 100.0 / w, 100.0 / h
    return {"x": fixed(shape.left * sx, PERCENT_DIGITS), "y": fixed(shape.top * sy, PERCENT_DIGITS),
            "width": fixed(shape.width * sx, PERCENT_DIGITS),
            "height": fixed(shape.height * sy, PERCENT_DIGITS), "rotation": shape.rotation}


def read_box(value: dict, size: Size, text: str | None) -> Shape:
    w, h = _size(size)
    rotation = value.get("rotation") or 0.0
    if type(rotation) not in (int, float) or not math.isfinite(rotation):
        raise ResultError("not a finite number", "value.rotation", repr(rotation))
    box = Box(_px(value, "x", w), _px(value, "y", h), _px(value, "width", w),
              _px(value, "height", h), float(rotation) % 360.0)
    if box.width < 0 or box.height < 0:
        raise ResultError("negative width or height", "value")
    return box


def write_polygon(shape: Shape, size: Size) -> dict:
    w, h = _size(size)
    assert isinstance(shape, Polygon)
    return {"points": [[fixed(x / w * 100.0, PERCENT_DIGITS), fixed(y / h * 100.0, PERCENT_DIGITS)]
                       for x, y in shape.points], "closed": True}  # pct(), inline


def read_polygon(value: dict, size: Size, text: str | None) -> Shape:
    w, h = _size(size)
    raw = value.get("points")
    if not isinstance(raw, list):
        raise ResultError("missing" if raw is None else "not an array of points", "value.points")
    pts = []
    for i, p in enumerate(raw):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise ResultError("not an [x, y] pair", f"value.points[{i}]", repr(p))
        pair = {"x": p[0], "y": p[1]}
        try:
            pts.append((_px(pair, "x", w), _px(pair, "y", h)))
        except ResultError as exc:
            raise ResultError(exc.reason, f"value.points[{i}]", exc.detail) from None
    if len(pts) > 1 and pts[0] == pts[-1]:
        pts.pop()
    if len(pts) < 3:
        raise ResultError("a polygon needs at least 3 distinct points", "value.points")
    return Polygon(tuple(pts))


def write_point(shape: Shape, size: Size) -> dict:
    w, h = _size(size)
    assert isinstance(shape, KeyPoint)
    return {"x": pct(shape.x, w), "y": pct(shape.y, h)}


def read_point(value: dict, size: Size, text: str | None) -> Shape:
    w, h = _size(size)  # value.width is how the editor draws it: no Labelbox point has a size
    return KeyPoint(_px(value, "x", w), _px(value, "y", h))


# px: Label Studio's default strokeWidth of KeyPoint(Labels) (1.23.2)
POINT_STROKE_WIDTH: Final = 2.0


def point_style(target: Any, size: Size) -> dict:
    """``value.width``: Label Studio 1.23's editor recognises a key point only by ``x``, ``y`` and
    ``width`` (``KeyPointRegion``: a value without ``width`` is no region, nothing is drawn) and
    draws it as a circle of that radius, in percent of the image width (never under 2 screen
    pixels). Its own tool writes the control's ``strokeWidth`` there, in screen pixels at the
    time of drawing; we write the control's ``strokeWidth`` (Label Studio's default when unset)
    in pixels of the original image, so a prediction looks like a point drawn at 100% zoom."""
    w, _ = _size(size)
    return {"width": pct(target.stroke_width or POINT_STROKE_WIDTH, w)}


# ----- text spans (code points, end exclusive) -----------------------------------------------

def write_span(shape: Shape, size: Size) -> dict:
    assert isinstance(shape, Span)
    value: dict = {"start": shape.start, "end": shape.end}
    if shape.text is not None:
        value["text"] = shape.text
    return value


def read_span(value: dict, size: Size, text: str | None) -> Shape:
    ends = []
    for key in ("start", "end"):
        v = value.get(key)
        if type(v) is not int:
            raise ResultError("missing" if v is None else "not a whole number of characters",
                              f"value.{key}", None if v is None else repr(v))
        ends.append(v)
    start, end = ends
    if start < 0 or end <= start:
        raise ResultError("start and end are not a non-empty span", "value", f"{start}..{end}")
    if text is not None and end > len(text):
        raise ResultError("the span ends past the end of the text", "value.end",
                          f"end {end}, {len(text)} characters")
    said = value.get("text")
    return Span(start, end, said if isinstance(said, str) else
                (text[start:end] if text is not None else None))


# ----- brush masks (the codec: labelstudio/brush.py, imported on use: numpy is ~50 ms to import
# and starts a BLAS thread per CPU, which a prepare worker with no mask should not pay) -------

def write_mask(shape: Shape, size: Size) -> dict:
    from labelbridge.labelstudio import brush
    assert isinstance(shape, Mask)
    if size and size != (shape.width, shape.height):
        raise ResultError("the mask's size is not the image's", "original_width",
                          f"mask {shape.width}x{shape.height}, image {size[0]:g}x{size[1]:g}")
    return {"format": "rle", "rle": list(brush.encode(shape))}


def read_mask(value: dict, size: Size, text: str | None) -> Shape:
    from labelbridge.labelstudio import brush
    w, h = _size(size)
    if value.get("format", "rle") != "rle":
        raise ResultError("not a brush RLE", "value.format", repr(value.get("format")))
    rle = value.get("rle")
    if not isinstance(rle, list) or not rle:
        raise ResultError("missing" if rle is None else "not a non-empty array", "value.rle")
    try:
        mask = brush.decode(bytes(rle), int(w), int(h))
    except (TypeError, ValueError) as exc:  # bytes(): not ints 0..255; BrushError
        raise ResultError(str(exc) if isinstance(exc, brush.BrushError) else
                          "not an array of integers 0..255", "value.rle") from None
    if mask.empty:
        raise ResultError("empty mask: no pixel painted", "value.rle")
    return mask


def _unused(*_: object) -> Any:
    raise NotImplementedError("this kind reads and writes whole items")


def _write_track(writer: Any, region: Any, target: Any, tr: Any, report: Any) -> list[dict]:
    def nested(c: Any) -> list[dict]:
        out: list[dict] = []
        writer._classification(out, c, region, None, report, region.id)
        return out
    return video.write_region(region, target, tr, writer.mapping, report, _row(tr), nested)


def _read_track(item: dict, sizes: list, mapping: Any, report: Any, name: str,
                task_data: dict | None = None) -> Shape | None:
    return video.read_result(item, sizes, mapping, report, name, None, task_data)


def _nest_track(shape: Shape, nested: tuple) -> tuple[Shape, tuple]:
    if isinstance(shape, VideoTrack):  # Labelbox asks them on every keyframe
        return video.with_classifications(shape, nested), ()
    return shape, nested


def _row(tr: Any) -> str | None:
    return tr.data_row.id or tr.data_row.global_key or tr.data_row.external_id


BOX = ResultKind("bbox", "rectanglelabels", "rectangle", True, write_box, read_box)
POLYGON = ResultKind("polygon", "polygonlabels", "polygon", True, write_polygon, read_polygon)
POINT = ResultKind("point", "keypointlabels", "keypoint", True, write_point, read_point,
                   style=point_style)
SPAN = ResultKind("span", "labels", None, False, write_span, read_span)
HYPERTEXT_SPAN = ResultKind("span", "hypertextlabels", None, False, write_span, read_span)
MASK = ResultKind("mask", "brushlabels", "brush", True, write_mask, read_mask)
VIDEO_BOX = ResultKind("videobox", "videorectangle", None, True, _unused, _unused, "labels",
                       write_region=_write_track, read_item=_read_track, nest=_nest_track)

# Every kind, in one place. A new kind (BrushLabels masks, VideoRectangle...) is a module with
# its ResultKind row(s) and codec functions, added to this tuple; its tags go in
# mapping.TOOL_KINDS. PredictionCheck needs nothing: a result type it has no rule for is
# validated by LabelInterface itself.
KINDS: tuple[ResultKind, ...] = (BOX, POLYGON, POINT, SPAN, HYPERTEXT_SPAN, MASK,
                                 VIDEO_BOX)
BY_TYPE: Final[dict[str, ResultKind]] = {t: k for k in KINDS for t in k.types}
BY_SHAPE: Final[dict[str, ResultKind]] = {}
for _k in KINDS:
    BY_SHAPE.setdefault(_k.kind, _k)
LABEL_KEYS: tuple[str, ...] = tuple(k.labels_type for k in KINDS)
IMAGE_KINDS: frozenset[str] = frozenset(k.kind for k in KINDS if k.image)
