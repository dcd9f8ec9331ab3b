"""Labelbox geometry (export-v2 objects) -> neutral shapes: one reader per geometry key.

``READERS`` maps the key an exported object carries its geometry under to a pure function
``(value, path, context) -> Shape``; a reader raises ``ExportError`` naming the field and the
reason, and the caller adds the row. A new shape kind is one entry and one function here (masks
and video plug in the same way, in a module of their own whose ``READERS`` are listed below).

Format facts: boxes are absolute pixels top/left/height/width; polygons repeat their first point
at the end; NER ``end`` is inclusive and ``token`` is the covered text. Pixel values are rounded
to ``model.regions.PIXEL_DIGITS`` decimals, so identical input gives identical output both ways.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Final

from labelbridge.labelbox.errors import ExportError
from labelbridge.labelbox.mask_payload import READERS as MASK_READERS
from labelbridge.model.regions import PIXEL_DIGITS, Box, KeyPoint, Polygon, Polyline, Shape, Span
from labelbridge.model.rounding import fixed


@dataclass(frozen=True, slots=True)
class RowContext:
    """What a reader may need beyond its own value: the document text of a text row, if known."""

    text: str | None = None


def number(value: Any, path: str) -> float:
    """A finite JSON number, or ``ExportError`` saying what it is instead."""
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise ExportError("not a finite number", path)
    if type(value) is int:
        return float(value)
    raise ExportError(_what(value, "a number"), path)


def integer(value: Any, path: str) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise ExportError(_what(value, "an integer"), path)


def _what(value: Any, wanted: str) -> str:
    if value is None:
        return f"null, not {wanted}"
    if isinstance(value, bool):
        return f"a boolean, not {wanted}"
    if isinstance(value, str):
        return f"a string, not {wanted}"
    if isinstance(value, (list, dict)):
        return f"an {'array' if isinstance(value, list) else 'object'}, not {wanted}"
    if isinstance(value, float):
        return f"not a finite number, not {wanted}"
    return f"not {wanted}"


def field_of(obj: Any, key: str, path: str) -> Any:
    """``obj[key]`` of a JSON object, or ``ExportError`` (missing key, or not an object)."""
    if not isinstance(obj, dict):
        raise ExportError(_what(obj, "an object"), path)
    if key not in obj:
        raise ExportError("missing", f"{path}.{key}")
    return obj[key]


def pixel(obj: Any, key: str, path: str) -> float:
    v = obj.get(key) if type(obj) is dict else None
    if type(v) is float and v - v == 0.0:  # finite (inf - inf and nan - nan are nan)
        return fixed(v, PIXEL_DIGITS)
    return fixed(number(field_of(obj, key, path), f"{path}.{key}"), PIXEL_DIGITS)


def _points(value: Any, path: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list):
        raise ExportError(_what(value, "an array of points"), path)
    points = []
    for i, p in enumerate(value):
        x, y = (p.get("x"), p.get("y")) if type(p) is dict else (None, None)
        if type(x) is float and type(y) is float and x - x == y - y == 0.0:  # finite
            points.append((fixed(x, PIXEL_DIGITS), fixed(y, PIXEL_DIGITS)))
        else:  # say which field, and why
            points.append((pixel(p, "x", f"{path}[{i}]"), pixel(p, "y", f"{path}[{i}]")))
    return tuple(points)


def read_box(value: Any, path: str, ctx: RowContext) -> Shape:
    try:  # the plain case at once: four finite floats
        left, top, width, height = value["left"], value["top"], value["width"], value["height"]
        if not (type(left) is type(top) is type(width) is type(height) is float
                and left - left == top - top == width - width == height - height == 0.0):
            raise TypeError
        left, top = fixed(left, PIXEL_DIGITS), fixed(top, PIXEL_DIGITS)
        width, height = fixed(width, PIXEL_DIGITS), fixed(height, PIXEL_DIGITS)
    except (TypeError, KeyError):  # say which field, and why
        left, top = pixel(value, "left", path), pixel(value, "top", path)
        width, height = pixel(value, "width", path), pixel(value, "height", path)
    if width < 0 or height < 0:
        raise ExportError("negative width or height", path)
    return Box(left, top, width, height)


def read_polygon(value: Any, path: str, ctx: RowContext) -> Shape:
    pts = _points(value, path)
    if len(pts) > 1 and pts[0] == pts[-1]:
        pts = pts[:-1]  # Labelbox closes the ring
    if len(pts) < 3:
        raise ExportError("a polygon needs at least 3 distinct points", path)
    return Polygon(pts)


def read_line(value: Any, path: str, ctx: RowContext) -> Shape:
    pts = _points(value, path)
    if len(pts) < 2:
        raise ExportError("a polyline needs at least 2 points", path)
    return Polyline(pts)


def read_point(value: Any, path: str, ctx: RowContext) -> Shape:
    return KeyPoint(pixel(value, "x", path), pixel(value, "y", path))


def read_location(value: Any, path: str, ctx: RowContext) -> Shape:
    """An NER entity: ``end`` inclusive -> exclusive; checked against the text and ``token``."""
    start = integer(field_of(value, "start", path), f"{path}.start")
    end = integer(field_of(value, "end", path), f"{path}.end")
    token = value.get("token")
    if token is not None and not isinstance(token, str):
        raise ExportError(_what(token, "a string"), f"{path}.token")
    if start < 0 or end < start:
        raise ExportError("start and inclusive end are not a span", path, f"{start}..{end}")
    return entity_span(start, end + 1, token, ctx.text, path)


def entity_span(start: int, end: int, token: str | None, text: str | None, path: str) -> Span:
    """The span of ``[start, end)`` in code points. Labelbox does not document its unit for
    characters outside the Basic Multilingual Plane; where the text is known, ``token`` decides:
    code points if it matches that slice, UTF-16 code units if it matches that reading."""
    if text is None:
        if token is not None and len(token) != end - start:
            units = len(token.encode("utf-16-le")) // 2
            reason = ("the offsets count UTF-16 code units and the text is not in the export to "
                      "convert them" if units == end - start else
                      "the token's length does not match the offsets")
            raise ExportError(reason, path, f"token {token!r}, {end - start} offsets")
        return Span(start, end, token)
    if token is None or text[start:end] == token:
        if end > len(text):
            raise ExportError("the span ends past the end of the text", path,
                              f"inclusive end {end - 1}, {len(text)} characters")
        return Span(start, end, text[start:end])
    cp_start, cp_end = utf16_to_code_points(text, start), utf16_to_code_points(text, end)
    if cp_start is not None and cp_end is not None and text[cp_start:cp_end] == token:
        return Span(cp_start, cp_end, token)
    raise ExportError("the token is not the text at these offsets (neither as code points nor "
                      "as UTF-16 code units)", path, f"token {token!r}, text {text[start:end]!r}")


def utf16_to_code_points(text: str, offset: int) -> int | None:
    """The code point index of UTF-16 offset ``offset`` in ``text`` (None: inside a pair or past
    the end)."""
    units = 0
    for i, ch in enumerate(text):
        if units == offset:
            return i
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > offset:
            return None
    return len(text) if units == offset else None


Reader = Callable[[Any, str, RowContext], Shape]

# geometry key of an exported object -> (neutral kind for the report, reader)
READERS: Final[dict[str, tuple[str, Reader]]] = {
    "bounding_box": ("bbox", read_box),
    "polygon": ("polygon", read_polygon),
    "line": ("polyline", read_line),
    "point": ("point", read_point),
    "location": ("ner", read_location),
    **MASK_READERS,  # "mask", "composite_mask": labelbox/mask_payload.py
}

# annotation kinds (or geometry keys) read nowhere yet: (kind for the report, reason)
# (a module that reads one removes it here and adds its READERS entry)
UNSUPPORTED: Final[dict[str, tuple[str, str]]] = {
    "VideoSegmentationMask": ("mask", "video masks are not supported yet"),
    "DocumentBoundingBox": ("document", "document boxes are not supported"),
    "DocumentEntityToken": ("document", "document entities are not supported"),
    "ConversationalTextEntity": ("conversation", "conversation entities are not supported"),
    "conversational_location": ("conversation", "conversation entities are not supported"),
}
UNSUPPORTED_KEYS: Final[tuple[str, ...]] = tuple(k for k in UNSUPPORTED if k[0].islower())
