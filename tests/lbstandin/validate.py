"""Strict per-line validation of an NDJSON annotation import (LabelImport or MAL).

Every line gets a status line ``{"uuid", "dataRow", "status": "SUCCESS"|"FAILURE"}``; failures
also carry ``"errors": [{"name", "message", "additionalInfo": None}]`` (success lines carry no
``errors`` key, as in the SDK docstring). Error names used:

* ``InvalidAnnotation``   - not a JSON object, bad/missing geometry or answer, unknown keys,
                            confidence outside [0, 1], bad relationship ends
* ``InvalidDataRow``      - ``dataRow`` missing, or not exactly one of ``id`` / ``globalKey``
* ``DataRowNotFound``     - no such data row in the import's project
* ``InvalidUUID``         - ``uuid`` present but not a 128-bit UUID
* ``DuplicateAnnotation`` - a ``uuid`` already used on the same data row earlier in the import
* ``FeatureNotFound``     - ``name`` / ``schemaId`` (or an answer / nested classification)
                            not in the ontology
* ``UnsupportedAnnotation`` - relationship in a LabelImport; textSelections (not modelled
                            by the stand-in)

Video lines (``segments`` objects, ``frames`` classifications) are checked by ``video.py``.

Mask lines are checked by ``masks.check_mask`` (shape, base64, PNG, size, pixels).

A body that is not UTF-8, is empty, or has a line that is not JSON makes the whole import FAILED.
"""

from __future__ import annotations

import json
import math
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from . import video
from .masks import Fetch, MaskLineError, check_mask
from .ontology import CompiledOntology, Node

GEOMETRY_KEYS = {"bbox": "bbox", "polygon": "polygon", "point": "point", "line": "polyline",
                 "location": "ner", "relationship": "relationship", "mask": "mask"}
UNSUPPORTED_KEYS = ("textSelections", "conversationalLocation")
VIDEO_KEYS = ("segments", "frames")
TOP_KEYS = {"uuid", "dataRow", "name", "schemaId", "classifications", "answer", "confidence",
            "customMetrics", "messageId", "page", "unit", "isBenchmarkReferenceLabel",
            *GEOMETRY_KEYS, *UNSUPPORTED_KEYS, *VIDEO_KEYS}
NESTED_KEYS = {"name", "schemaId", "answer", "classifications", "confidence", "customMetrics",
               "uuid", "messageId"}
ANSWER_KEYS = {"name", "schemaId", "classifications", "confidence", "customMetrics"}


class LineError(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name
        self.message = message


@dataclass
class LineResult:
    index: int
    line: Any
    uuid: Any = None            # as sent (or generated when absent)
    canonical_uuid: str | None = None
    data_row: Any = None        # as sent
    data_row_id: str | None = None
    node: Node | None = None
    is_object: bool = False
    is_relationship: bool = False
    errors: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def fail(self, name: str, message: str) -> None:
        self.errors.append({"name": name, "message": message, "additionalInfo": None})

    def status_line(self) -> dict:
        out = {"uuid": self.uuid, "dataRow": self.data_row,
               "status": "SUCCESS" if self.ok else "FAILURE"}
        if not self.ok:
            out["errors"] = list(self.errors)
        return out


class MalformedImport(Exception):
    """The body is not NDJSON at all: the import goes to state FAILED."""


def parse_body(body: bytes) -> list:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedImport(f"file is not UTF-8: {e}") from None
    lines = []
    for n, raw in enumerate(text.split("\n"), 1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            lines.append(json.loads(raw))
        except ValueError as e:
            raise MalformedImport(f"line {n} is not valid JSON: {e}") from None
    if not lines:
        raise MalformedImport("file contains no NDJSON lines")
    return lines


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _point(p: Any, what: str) -> tuple:
    if not isinstance(p, dict) or set(p) != {"x", "y"} or not (_num(p["x"]) and _num(p["y"])):
        raise LineError("InvalidAnnotation", f"{what}: a point must be {{\"x\": number, \"y\": number}}, got {p!r}")
    return (p["x"], p["y"])


def _check_geometry(key: str, value: Any) -> None:
    if key == "bbox":
        if not isinstance(value, dict) or set(value) != {"top", "left", "height", "width"}:
            raise LineError("InvalidAnnotation", f"bbox must have exactly top, left, height, width; got {value!r}")
        if not all(_num(value[k]) for k in value):
            raise LineError("InvalidAnnotation", f"bbox values must be numbers; got {value!r}")
        if value["width"] <= 0 or value["height"] <= 0:
            raise LineError("InvalidAnnotation", f"bbox width and height must be > 0; got {value!r}")
    elif key == "point":
        _point(value, "point")
    elif key == "line":
        if not isinstance(value, list) or len(value) < 2:
            raise LineError("InvalidAnnotation", "line needs a list of at least 2 points")
        for p in value:
            _point(p, "line")
    elif key == "polygon":
        if not isinstance(value, list):
            raise LineError("InvalidAnnotation", "polygon must be a list of points")
        pts = [_point(p, "polygon") for p in value]
        ring = pts[:-1] if len(pts) > 1 and pts[0] == pts[-1] else pts
        if len(set(ring)) < 3:
            raise LineError("InvalidAnnotation",
                            f"polygon needs at least 3 distinct points; got {len(set(ring))}")
    elif key == "location":
        if not isinstance(value, dict) or not {"start", "end"} <= set(value) or not set(value) <= {"start", "end", "token"}:
            raise LineError("InvalidAnnotation", f"location must be {{start, end}}; got {value!r}")
        s, e = value["start"], value["end"]
        if not (isinstance(s, int) and isinstance(e, int)) or isinstance(s, bool) or isinstance(e, bool):
            raise LineError("InvalidAnnotation", f"location start/end must be integers; got {value!r}")
        if s < 0 or e < s:
            raise LineError("InvalidAnnotation", f"location needs 0 <= start <= end (end is inclusive); got {value!r}")


def _confidence(obj: dict, what: str) -> None:
    if "confidence" in obj and obj["confidence"] is not None:
        c = obj["confidence"]
        if not _num(c) or not 0 <= c <= 1:
            raise LineError("InvalidAnnotation", f"{what}: confidence must be a number in [0, 1]; got {c!r}")


def _feature_ref(obj: dict, what: str) -> tuple:
    name, sid = obj.get("name"), obj.get("schemaId")
    if name is None and sid is None:
        raise LineError("FeatureNotFound", f"{what}: needs a name or schemaId")
    if (name is not None and not isinstance(name, str)) or (sid is not None and not isinstance(sid, str)):
        raise LineError("FeatureNotFound", f"{what}: name and schemaId must be strings")
    return name, sid


def _describe(name, sid) -> str:
    return repr(name) if sid is None else f"schemaId {sid!r}" + (f" / name {name!r}" if name else "")


def check_classifications(onto: CompiledOntology, parent: Node, items: Any, where: str) -> None:
    """Validate a list of nested classifications against ``parent``'s children."""
    if not isinstance(items, list):
        raise LineError("InvalidAnnotation", f"{where}: classifications must be a list")
    seen = set()
    for item in items:
        if not isinstance(item, dict):
            raise LineError("InvalidAnnotation", f"{where}: nested classification must be an object")
        extra = set(item) - NESTED_KEYS
        if extra:
            raise LineError("InvalidAnnotation", f"{where}: unknown keys {sorted(extra)} in nested classification")
        name, sid = _feature_ref(item, where)
        node = onto.lookup(parent, name, sid)
        if node is None or node.is_tool or node.kind == "option":
            raise LineError("FeatureNotFound",
                            f"{where}: nested classification {_describe(name, sid)} is not in the ontology here")
        if node.schema_id in seen:
            raise LineError("InvalidAnnotation", f"{where}: classification {node.name!r} given twice")
        seen.add(node.schema_id)
        _confidence(item, where)
        if "answer" not in item:
            raise LineError("InvalidAnnotation", f"{where}: classification {node.name!r} has no answer")
        check_answer(onto, node, item["answer"], f"{where} > {node.name}")
        if "classifications" in item:
            if node.kind != "text":
                raise LineError("InvalidAnnotation",
                                f"{where} > {node.name}: put nested classifications under the answer")
            check_classifications(onto, node, item["classifications"], f"{where} > {node.name}")


def _check_option(onto: CompiledOntology, node: Node, ans: Any, where: str) -> Node:
    if not isinstance(ans, dict):
        raise LineError("InvalidAnnotation", f"{where}: an answer must be an object with a name; got {ans!r}")
    extra = set(ans) - ANSWER_KEYS
    if extra:
        raise LineError("InvalidAnnotation", f"{where}: unknown keys {sorted(extra)} in answer")
    name, sid = _feature_ref(ans, where + " answer")
    opt = onto.lookup(node, name, sid)
    if opt is None:
        raise LineError("FeatureNotFound", f"{where}: answer {_describe(name, sid)} is not an option of {node.name!r}")
    _confidence(ans, where)
    if "classifications" in ans:
        check_classifications(onto, opt, ans["classifications"], f"{where} = {opt.name}")
    return opt


def check_answer(onto: CompiledOntology, node: Node, ans: Any, where: str) -> None:
    if node.kind == "radio":
        if isinstance(ans, list):
            raise LineError("InvalidAnnotation", f"{where}: radio {node.name!r} takes one answer object, not a list")
        _check_option(onto, node, ans, where)
    elif node.kind == "checklist":
        if not isinstance(ans, list) or not ans:
            raise LineError("InvalidAnnotation", f"{where}: checklist {node.name!r} takes a non-empty list of answers")
        seen = set()
        for a in ans:
            opt = _check_option(onto, node, a, where)
            if opt.schema_id in seen:
                raise LineError("InvalidAnnotation", f"{where}: checklist answer {opt.name!r} given twice")
            seen.add(opt.schema_id)
    elif node.kind == "text":
        if not isinstance(ans, str):
            raise LineError("InvalidAnnotation", f"{where}: text {node.name!r} takes a string answer; got {type(ans).__name__}")
    else:
        raise LineError("InvalidAnnotation", f"{where}: {node.name!r} is a {node.kind} tool, not a classification")


def validate_lines(lines: list, kind: str, onto: CompiledOntology, rows_by_id: dict,
                   rows_by_gk: dict, fetch: Fetch = lambda url: None) -> list[LineResult]:
    """Validate parsed lines; ``rows_by_*`` hold the data rows of the import's project."""
    results: list[LineResult] = []
    seen_uuids: dict[tuple, int] = {}
    for i, line in enumerate(lines):
        r = LineResult(i, line)
        results.append(r)
        try:
            _validate_line(r, line, kind, onto, rows_by_id, rows_by_gk, seen_uuids, fetch)
        except LineError as e:
            r.fail(e.name, e.message)
    # Second pass: relationship ends must be successful object lines of the same data row.
    objects = {(r.data_row_id, r.canonical_uuid): r for r in results if r.ok and r.is_object}
    for r in results:
        if r.ok and r.is_relationship:
            rel = r.line["relationship"]
            for end in ("source", "target"):
                ref = _canonical(rel[end])
                if ref is None or (r.data_row_id, ref) not in objects:
                    r.fail("InvalidAnnotation",
                           f"relationship {end} {rel[end]!r} is not the uuid of a valid object "
                           "annotation on the same data row in this import")
                    break
    return results


def _canonical(u: Any) -> str | None:
    if not isinstance(u, str):
        return None
    try:
        return str(uuidlib.UUID(u))
    except ValueError:
        return None


def _validate_line(r: LineResult, line: Any, kind: str, onto: CompiledOntology, rows_by_id: dict,
                   rows_by_gk: dict, seen_uuids: dict, fetch: Fetch) -> None:
    if not isinstance(line, dict):
        raise LineError("InvalidAnnotation", f"line {r.index + 1} is not a JSON object")
    r.data_row = line.get("dataRow")
    r.uuid = line.get("uuid")
    dr = line.get("dataRow")
    if not isinstance(dr, dict):
        raise LineError("InvalidDataRow", "dataRow is missing or not an object")
    if set(dr) - {"id", "globalKey"}:
        raise LineError("InvalidDataRow", f"dataRow has unknown keys {sorted(set(dr) - {'id', 'globalKey'})}")
    has_id, has_gk = dr.get("id") is not None, dr.get("globalKey") is not None
    if has_id == has_gk:
        raise LineError("InvalidDataRow", "dataRow must have exactly one of id or globalKey")
    row = rows_by_id.get(dr["id"]) if has_id else rows_by_gk.get(dr["globalKey"])
    if row is None:
        ref = f"id {dr['id']!r}" if has_id else f"globalKey {dr['globalKey']!r}"
        raise LineError("DataRowNotFound", f"data row with {ref} not found in project {onto.project_id}")
    r.data_row_id = row["id"]
    if "uuid" in line:
        r.canonical_uuid = _canonical(line["uuid"])
        if r.canonical_uuid is None:
            raise LineError("InvalidUUID", f"uuid {line['uuid']!r} is not a valid 128-bit UUID")
    else:
        r.uuid = str(uuidlib.uuid4())
        r.canonical_uuid = r.uuid
    key = (r.data_row_id, r.canonical_uuid)
    if key in seen_uuids:
        raise LineError("DuplicateAnnotation",
                        f"uuid {r.uuid!r} already used on this data row by line {seen_uuids[key] + 1}")
    seen_uuids[key] = r.index
    extra = set(line) - TOP_KEYS
    if extra:
        raise LineError("InvalidAnnotation", f"unknown keys {sorted(extra)}")
    for k in UNSUPPORTED_KEYS:
        if k in line:
            raise LineError("UnsupportedAnnotation", f"stand-in does not support {k!r} annotations")
    name, sid = _feature_ref(line, "annotation")
    node = onto.lookup(onto.root, name, sid)
    if node is None:
        raise LineError("FeatureNotFound", f"feature {_describe(name, sid)} is not in the project ontology")
    r.node = node
    _confidence(line, node.name)
    if "segments" in line:
        if any(k in line for k in (*GEOMETRY_KEYS, "answer", "frames")):
            raise LineError("InvalidAnnotation", f"{node.name!r}: a segments line has no other geometry, answer or frames")
        video.check_video_object(line, node, _check_geometry,
                                 lambda items, at: check_classifications(onto, node, items, at), LineError)
        r.is_object = True
        return
    present = [k for k in (*GEOMETRY_KEYS, "answer") if k in line]
    if len(present) != 1:
        raise LineError("InvalidAnnotation",
                        f"{node.name!r}: expected exactly one of {sorted([*GEOMETRY_KEYS, 'answer'])}; got {present}")
    key = present[0]
    if key == "answer":
        if node.is_tool:
            raise LineError("InvalidAnnotation", f"{node.name!r} is a {node.kind} tool; an answer is not allowed")
        answer, framed = video.strip_answer_frames(node, line["answer"], node.name, LineError)
        if "frames" in line:
            if node.kind not in ("radio", "checklist") or framed:
                raise LineError("InvalidAnnotation", f"{node.name!r}: line frames go on a radio or checklist whose answers have none")
            video.check_frames(line["frames"], node.name, LineError)
        if node.kind == "text" and isinstance(answer, list):
            video.check_video_text(node, answer, node.name, LineError)
        else:
            check_answer(onto, node, answer, node.name)
        if "classifications" in line:
            if node.kind != "text":
                raise LineError("InvalidAnnotation",
                                f"{node.name!r}: nested classifications go under the answer")
            check_classifications(onto, node, line["classifications"], node.name)
        return
    if GEOMETRY_KEYS[key] != node.kind:
        raise LineError("InvalidAnnotation",
                        f"feature {node.name!r} is a {node.kind} feature; a {key!r} annotation is not allowed")
    if key == "relationship":
        if kind == "label":
            raise LineError("UnsupportedAnnotation", "Relationships are not supported for label import")
        rel = line["relationship"]
        if not isinstance(rel, dict) or not {"source", "target"} <= set(rel):
            raise LineError("InvalidAnnotation", "relationship needs source and target")
        extra = set(rel) - {"source", "target", "type", "readonly", "sourceOntologyName"}
        if extra:
            raise LineError("InvalidAnnotation", f"relationship has unknown keys {sorted(extra)}")
        if rel.get("type", "unidirectional") not in ("unidirectional", "bidirectional"):
            raise LineError("InvalidAnnotation", f"relationship type {rel.get('type')!r} is not uni/bidirectional")
        if _canonical(rel["source"]) is None or _canonical(rel["target"]) is None:
            raise LineError("InvalidAnnotation", "relationship source and target must be uuids")
        if _canonical(rel["source"]) == _canonical(rel["target"]):
            raise LineError("InvalidAnnotation", "relationship source and target are the same annotation")
        if line.get("classifications"):
            check_classifications(onto, node, line["classifications"], node.name)
        r.is_relationship = True
        return
    if key == "mask":
        try:
            check_mask(line["mask"], row.get("media_attributes") or {}, fetch)
        except MaskLineError as e:
            raise LineError("InvalidAnnotation", f"{node.name!r}: {e}") from None
    else:
        _check_geometry(key, line[key])
    check_classifications(onto, node, line.get("classifications", []), node.name)
    r.is_object = True
