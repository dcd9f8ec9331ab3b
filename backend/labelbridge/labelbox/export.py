"""Labelbox export-v2 rows -> neutral regions.

An export is one JSON object per line (a file, a directory of files, or gzip). The SDK has no
deserializer since 6.0, so rows are parsed here. Reading is split in two steps so an index can
be built at parse speed: ``compact_row`` keeps only what conversion needs, ``task_regions``
turns that into the neutral model later.

Format facts handled here: bounding boxes are absolute top/left/height/width; polygons repeat
their first point at the end; NER ``end`` is inclusive; video labels (``frames``/``segments``)
are read by ``video.py``; masks are not supported yet (counted and logged, never silently
dropped).
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import orjson

from labelbridge.labelbox import video
from labelbridge.model.ids import region_id_for_feature
from labelbridge.model.regions import (Answer, Box, Classification, DataRowRef, KeyPoint, Polygon,
                                       Polyline, Region, Relation, Shape, Span, TaskRegions)
from labelbridge.model.report import ConversionReport

Source = Literal["predictions", "run_labels", "project_labels"]
EXPORT_SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz")


class ExportError(ValueError):
    """The export cannot be read; the message names the file, line and field."""


# ----- reading lines ------------------------------------------------------------------------

def export_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(EXPORT_SUFFIXES))
        if not files:
            raise ExportError(f"{path}: no export files ({', '.join(EXPORT_SUFFIXES)}) in directory")
        return files
    if not path.is_file():
        raise ExportError(f"{path}: no such export file or directory")
    return [path]


_BUFFER = 1 << 20  # export lines are often longer than the default 8 KiB buffer


_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def open_export(path: Path) -> io.BufferedReader:
    """An export file for reading bytes, decompressed if it is gzip."""
    raw = open(path, "rb", buffering=_BUFFER)
    if raw.read(2) == _GZIP_MAGIC:
        raw.seek(0)
        return io.BufferedReader(gzip.GzipFile(fileobj=raw),  # type: ignore[arg-type]
                                 buffer_size=_BUFFER)
    raw.seek(0)
    return raw  # type: ignore[return-value]


def iter_lines(path: Path) -> Iterator[tuple[str, int, bytes]]:
    """(file name, line number, line) for every non-blank line, streaming."""
    for file in export_files(path):
        with open_export(file) as fh:
            for n, line in enumerate(fh, 1):
                if not line.isspace():  # same test as line.strip(), without copying the line
                    yield file.name, n, line


def iter_rows(path: Path) -> Iterator[dict]:
    for name, n, line in iter_lines(path):
        yield parse_line(line, name, n)


def parse_line(line: bytes, name: str = "<export>", n: int = 0) -> dict:
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ExportError(f"{name}:{n}: not valid JSON: {exc}") from None
    if not isinstance(row, dict) or not isinstance(row.get("data_row"), dict):
        raise ExportError(f"{name}:{n}: not an export-v2 row (no 'data_row' object)")
    return row


# ----- selecting the label of a row ---------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """Which label of a row to read: model-run predictions or labels, or project labels."""

    source: Source = "predictions"
    model_run_id: str | None = None
    project_id: str | None = None


def data_row_ref(row: dict) -> DataRowRef:
    dr = row.get("data_row") or {}
    return DataRowRef(id=dr.get("id"), global_key=dr.get("global_key"),
                      external_id=dr.get("external_id"), row_data=dr.get("row_data"))


def _pick_one(options: dict, wanted: str | None, what: str, env: str) -> tuple[str, Any] | None:
    if not options:
        return None
    if wanted is not None:
        return (wanted, options[wanted]) if wanted in options else None
    if len(options) > 1:
        raise ExportError(f"the export holds several {what} ({', '.join(sorted(options))}); "
                          f"set {env} to choose one")
    return next(iter(options.items()))


def _newest(labels: list[dict]) -> dict | None:
    def when(label: dict) -> str:
        details = label.get("label_details") or {}
        return str(details.get("updated_at") or details.get("created_at") or "")
    best = None
    for label in labels:  # the newest by date; on ties (or no dates) the later one
        if best is None or when(label) >= when(best):
            best = label
    return best


def select_annotations(row: dict, sel: Selection) -> tuple[str | None, dict | None]:
    """(origin id, annotations) of the chosen label: run id or project id, and the merged
    ``{"objects", "classifications", "relationships"}``; (None, None) when the row has none."""
    if sel.source == "project_labels":
        picked = _pick_one(row.get("projects") or {}, sel.project_id, "projects",
                           "LABELBOX_PROJECT_ID")
        if picked is None:
            return None, None
        pid, project = picked
        label = _newest((project or {}).get("labels") or [])
        return (pid, label.get("annotations") or {}) if label else (pid, None)
    runs = {}
    for model_id, model in (row.get("experiments") or {}).items():
        for run_id, run in ((model or {}).get("runs") or {}).items():
            runs[run_id] = run or {}
    picked = _pick_one(runs, sel.model_run_id, "model runs", "LABELBOX_MODEL_RUN_ID")
    if picked is None:
        return None, None
    run_id, run = picked
    key = "predictions" if sel.source == "predictions" else "labels"
    items = run.get(key) or []
    if not items:
        return run_id, None
    if len(items) == 1:
        return run_id, items[0].get("annotations") or {}
    merged: dict[str, list] = {"objects": [], "classifications": [], "relationships": []}
    for item in items:
        ann = item.get("annotations") or {}
        for part in merged:
            merged[part].extend(ann.get(part) or [])
        for part, value in ann.items():  # e.g. video "frames": keep so it is reported
            if part not in merged:
                merged[part] = value
    return run_id, merged


def compact_row(row: dict, sel: Selection) -> tuple[str | None, dict] | None:
    """The part of a row conversion needs: data row, media size, the chosen annotations."""
    origin, annotations = select_annotations(row, sel)
    if annotations is None:
        return None
    media = row.get("media_attributes") or {}
    compact = {
        "data_row": {k: v for k, v in (row.get("data_row") or {}).items()
                     if k in ("id", "global_key", "external_id", "row_data")},
        "media": {k: media[k] for k in ("width", "height", "mime_type", "frame_rate",
                                        "frame_count", "duration") if k in media},
        "annotations": annotations,
    }
    return origin, compact


# ----- annotations -> regions ---------------------------------------------------------------

_SKIPPED_KINDS = {
    "ImageSegmentationMask": "mask", "VideoSegmentationMask": "mask",
    "DocumentBoundingBox": "document", "DocumentEntityToken": "document",
    "ConversationalTextEntity": "conversation",
}


def _f(v: Any) -> float:
    return float(v)


def _shape(obj: dict) -> Shape | str:
    """The geometry of an exported object, or the reason it cannot be converted."""
    kind = obj.get("annotation_kind") or ""
    if kind.startswith("Video"):
        return "video is not supported yet"
    if kind in _SKIPPED_KINDS or "mask" in obj or "composite_mask" in obj:
        what = _SKIPPED_KINDS.get(kind, "mask")
        return "masks are not supported yet" if what == "mask" else f"{kind or what} is not supported"
    if "bounding_box" in obj:
        bb = obj["bounding_box"]
        return Box(_f(bb["left"]), _f(bb["top"]), _f(bb["width"]), _f(bb["height"]))
    if "polygon" in obj:
        pts = tuple((_f(p["x"]), _f(p["y"])) for p in obj["polygon"])
        if len(pts) > 1 and pts[0] == pts[-1]:
            pts = pts[:-1]
        return Polygon(pts) if len(pts) >= 3 else "polygon with fewer than 3 points"
    if "line" in obj:
        pts = tuple((_f(p["x"]), _f(p["y"])) for p in obj["line"])
        return Polyline(pts) if len(pts) >= 2 else "polyline with fewer than 2 points"
    if "point" in obj:
        return KeyPoint(_f(obj["point"]["x"]), _f(obj["point"]["y"]))
    if "location" in obj and "start" in (obj["location"] or {}):
        loc = obj["location"]
        return Span(int(loc["start"]), int(loc["end"]) + 1, loc.get("token"))  # LB end inclusive
    return f"unknown object kind {kind or sorted(obj)}"


def _kind_of(obj: dict) -> str:
    for key, kind in (("bounding_box", "bbox"), ("polygon", "polygon"), ("line", "polyline"),
                      ("point", "point"), ("location", "ner")):
        if key in obj:
            return kind
    kind = obj.get("annotation_kind") or "object"
    return "video" if kind.startswith("Video") else _SKIPPED_KINDS.get(kind, kind)


def _score(item: dict) -> float | None:
    c = item.get("confidence")
    return float(c) if isinstance(c, (int, float)) else None


class _RowReader:
    def __init__(self, ref: DataRowRef, report: ConversionReport) -> None:
        self.ref = ref
        self.row_name = ref.id or ref.global_key or ref.external_id or "?"
        self.report = report

    def classification(self, item: dict, path: tuple, nested: bool) -> Classification | None:
        name = item.get("name") or item.get("value")
        if not name:
            self.report.loss("classification", "classification without a name", None,
                             self.row_name)
            return None
        cid = region_id_for_feature(item.get("feature_id"), self.row_name, *path)
        common = dict(name=name, id=cid, score=_score(item),
                      schema_id=item.get("feature_schema_id"))
        if "radio_answer" in item:
            ans = self.answer(item["radio_answer"], path)
            return Classification(kind="radio", answers=(ans,) if ans else (), **common)
        if "checklist_answers" in item:
            answers = tuple(ans for i, raw in enumerate(item["checklist_answers"] or [])
                            if (ans := self.answer(raw, path + (i,))) is not None)
            return Classification(kind="checklist", answers=answers, **common)
        if "text_answer" in item:
            content = (item["text_answer"] or {}).get("content")
            return Classification(kind="text", text="" if content is None else str(content),
                                  **common)
        self.report.loss("classification", "unsupported classification shape "
                         f"(keys {sorted(k for k in item if k not in ('name', 'value'))})",
                         name, self.row_name)
        return None

    def answer(self, item: dict, path: tuple) -> Answer | None:
        name = item.get("name") or item.get("value")
        if not name:
            return None
        nested = self.classifications(item.get("classifications") or [], path + (name,), True)
        return Answer(name=name, classifications=nested, score=_score(item),
                      schema_id=item.get("feature_schema_id"))

    def classifications(self, items: list, path: tuple, nested: bool) -> tuple[Classification, ...]:
        out = []
        for i, item in enumerate(items):
            c = self.classification(item, path + (i,), nested)
            if c is not None:
                out.append(c)
        return tuple(out)

    def region(self, obj: dict, index: int) -> Region | None:
        name = obj.get("name") or obj.get("value") or ""
        shape = _shape(obj)
        kind = _kind_of(obj)
        if isinstance(shape, str):
            self.report.loss(kind, shape, name or None, self.row_name)
            return None
        rid = region_id_for_feature(obj.get("feature_id"), self.row_name, "object", index)
        nested = self.classifications(obj.get("classifications") or [], (rid,), True)
        return Region(id=rid, name=name, shape=shape, classifications=nested, score=_score(obj),
                      schema_id=obj.get("feature_schema_id"))

    def relation(self, item: dict, ids: set[str], index: int) -> Relation | None:
        def ref(v: Any) -> str | None:
            if isinstance(v, dict):
                v = v.get("feature_id") or v.get("id")
            return v if isinstance(v, str) else None
        src, tgt = ref(item.get("source")), ref(item.get("target"))
        name = item.get("name") or item.get("value")
        if not src or not tgt or src not in ids or tgt not in ids:
            self.report.loss("relationship", "source or target object is not in this label",
                             name, self.row_name)
            return None
        kind = str(item.get("type") or item.get("relationship_type") or "").lower()
        bidirectional = kind == "bidirectional" or item.get("unidirectional") is False
        return Relation(src, tgt, name, bidirectional,
                        region_id_for_feature(item.get("feature_id"), self.row_name, "rel", index))


def task_regions(compact: dict, report: ConversionReport | None = None) -> TaskRegions:
    """Neutral regions of a compact row (see ``compact_row``)."""
    report = report if report is not None else ConversionReport()
    ref = DataRowRef(**{k: compact["data_row"].get(k)
                        for k in ("id", "global_key", "external_id", "row_data")})
    reader = _RowReader(ref, report)
    ann = compact.get("annotations") or {}
    regions: list[Region] = []
    frame_classifications: list[Classification] = []
    if video.is_video(ann):
        regions, frame_classifications = video.VideoReader(
            reader.row_name, lambda items, path: reader.classifications(items, path, True),
            report).read(ann)
    for i, obj in enumerate(ann.get("objects") or []):
        r = reader.region(obj, i)
        if r is not None:
            regions.append(r)
    ids = {r.id for r in regions}
    relations = []
    for i, item in enumerate(ann.get("relationships") or []):
        rel = reader.relation(item, ids, i)
        if rel is not None:
            relations.append(rel)
    media = compact.get("media") or {}
    width, height = media.get("width"), media.get("height")
    return TaskRegions(
        data_row=ref, regions=tuple(regions),
        classifications=reader.classifications(ann.get("classifications") or [], ("global",),
                                               False) + tuple(frame_classifications),
        relations=tuple(relations),
        width=int(width) if width else None, height=int(height) if height else None,
        video=video.video_info(media) if video.is_video(ann) else None)


def feature_names(compact: dict) -> set[str]:
    """Every feature and option name in a compact row (Labelbox's exact spelling)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            name = node.get("name")
            if isinstance(name, str):
                names.add(name)
            for v in node.values():
                if isinstance(v, (dict, list)):
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(compact.get("annotations") or {})
    return names


class FeatureNames:
    """Collects ``feature_names`` of many rows cheaply, from their annotations as serialized by
    ``orjson.dumps`` (alone or within JSON with no other "name" key).

    Without a backslash in that JSON no quote is escaped, so every ``"name":"`` is a "name" key
    whose string value ends at the next quote: exactly the names the walk collects. The pattern
    skips names already known (a negative lookahead, rebuilt when a new name turns up), so a
    row costs one scan in C and Python objects only for new names. Rows whose JSON holds a
    backslash are walked instead.
    """

    LOOKAHEAD_LIMIT = 2000  # beyond this many names, match all and subtract

    def __init__(self) -> None:
        self.names: set[str] = set()
        self._pattern = self._compile()

    def _compile(self) -> re.Pattern[bytes]:
        if not self.names or len(self.names) > self.LOOKAHEAD_LIMIT:
            return re.compile(rb'"name":"([^"\\]*)"')
        known = b"|".join(re.escape(n.encode()) for n in sorted(self.names, key=len, reverse=True))
        return re.compile(rb'"name":"(?!(?:' + known + rb')")([^"\\]*)"')

    def add(self, annotations_json: bytes, annotations: dict) -> None:
        if b"\\" in annotations_json:
            new = feature_names({"annotations": annotations}) - self.names
        else:
            new = {raw.decode() for raw in self._pattern.findall(annotations_json)} - self.names
        if new:
            self.names |= new
            self._pattern = self._compile()
