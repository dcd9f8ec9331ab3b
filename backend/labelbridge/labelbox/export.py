"""Labelbox export-v2 rows -> neutral regions.

An export is one JSON object per line (a file, a directory of files, or gzip). The SDK has no
deserializer since 6.0, so rows are parsed here. Reading is split in two steps so an index can
be built at parse speed: ``compact_row`` keeps only what conversion needs,
``annotations.task_regions`` turns that into the neutral model later (``shapes`` reads each
geometry). A row whose structure is damaged is never an exception here: what cannot be selected
is no label (and ``task_regions`` reports what it cannot read).
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import orjson

from labelbridge.labelbox import video, video_merge
from labelbridge.labelbox.annotations import task_regions
from labelbridge.labelbox.errors import ExportError

__all__ = ["ExportError", "Selection", "compact_row", "iter_rows", "parse_line", "task_regions"]

Source = Literal["predictions", "run_labels", "project_labels"]
EXPORT_SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz")


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


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _arr(value: Any) -> list:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


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
        details = _obj(label.get("label_details"))
        return str(details.get("updated_at") or details.get("created_at") or "")
    best = None
    for label in labels:  # the newest by date; on ties (or no dates) the later one
        if best is None or when(label) >= when(best):
            best = label
    return best


def select_annotations(row: dict, sel: Selection) -> tuple[str | None, Any]:
    """(origin id, annotations) of the chosen label: run id or project id, and the merged
    ``{"objects", "classifications", "relationships"}``; (None, None) when the row has none.
    Parts of the wrong JSON type count as absent; the annotations are returned as found (what
    cannot be read in them is reported by ``task_regions``)."""
    if sel.source == "project_labels":
        projects = {k: v for k, v in _obj(row.get("projects")).items() if isinstance(v, dict)}
        picked = _pick_one(projects, sel.project_id, "projects", "LABELBOX_PROJECT_ID")
        if picked is None:
            return None, None
        pid, project = picked
        label = _newest(_arr(_obj(project).get("labels")))
        return (pid, label.get("annotations") or {}) if label else (pid, None)
    runs = {}
    for model in _obj(row.get("experiments")).values():
        for run_id, run in _obj(_obj(model).get("runs")).items():
            if isinstance(run, dict):  # a damaged entry is no run to choose between
                runs[run_id] = run
    picked = _pick_one(runs, sel.model_run_id, "model runs", "LABELBOX_MODEL_RUN_ID")
    if picked is None:
        return None, None
    run_id, run = picked
    items = _arr(run.get("predictions" if sel.source == "predictions" else "labels"))
    if not items:
        return run_id, None
    if len(items) == 1:
        return run_id, items[0].get("annotations") or {}
    merged: dict[str, Any] = {"objects": [], "classifications": [], "relationships": []}
    parts = [_obj(item.get("annotations")) for item in items]
    for ann in parts:
        for part in ("objects", "classifications", "relationships"):
            value = ann.get(part)
            merged[part].extend(value if isinstance(value, list) else [])
    if any(video.is_video(ann) for ann in parts):   # frames merged feature by feature
        merged.update(video_merge.merge([ann for ann in parts if video.is_video(ann)]))
    return run_id, merged


def compact_row(row: dict, sel: Selection) -> tuple[str | None, dict] | None:
    """The part of a row conversion needs: data row, media size, the chosen annotations."""
    origin, annotations = select_annotations(row, sel)
    if annotations is None:
        return None
    media = _obj(row.get("media_attributes"))
    compact = {
        "data_row": {k: v for k, v in _obj(row.get("data_row")).items()
                     if k in ("id", "global_key", "external_id", "row_data")},
        "media": {k: media[k] for k in ("width", "height", "mime_type", "frame_rate",
                                        "frame_count", "duration") if k in media},
        "annotations": annotations,
    }
    return origin, compact


# ----- feature names ----------------------------------------------------------------------

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
