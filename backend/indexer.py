"""Builds the prediction index from a Labelbox export, streaming (bounded memory)."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from backend.labelbox import export
from backend.store import IndexRow, build_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexResult:
    rows: int
    skipped_rows: int
    origins: dict[str, int]
    model_version: str


def export_fingerprint(path: Path, selection: export.Selection) -> str:
    """Changes when the export files or the selection change (size + mtime, not content)."""
    h = hashlib.sha1(repr(selection).encode())
    for f in export.export_files(path):
        st = f.stat()
        h.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _model_version(origins: Counter, selection: export.Selection, fingerprint: str) -> str:
    if selection.source != "project_labels":
        if selection.model_run_id:
            return selection.model_run_id
        if len(origins) == 1:
            return next(iter(origins))
    elif len(origins) == 1:
        return f"labelbox-project-{next(iter(origins))}"
    return f"labelbox-export-{fingerprint[:12]}"


def index_export(export_path: Path, index_path: Path, selection: export.Selection,
                 progress: Callable[[int], None] | None = None) -> IndexResult:
    """Stream ``export_path`` into a fresh index at ``index_path``."""
    fingerprint = export_fingerprint(export_path, selection)
    origins: Counter[str] = Counter()
    names = export.FeatureNames()
    skipped = 0

    def rows() -> Iterator[IndexRow]:
        nonlocal skipped
        dumps = export.orjson.dumps
        for name, n, line in export.iter_lines(export_path):
            picked = export.compact_row(export.parse_line(line, name, n), selection)
            if picked is None:
                skipped += 1
                continue
            origin, compact = picked
            if origin:
                origins[origin] += 1
            dr = compact["data_row"]
            # serialize the annotations once: for the payload (the same bytes as
            # dumps(compact)) and to read the feature names from
            annotations = dumps(compact["annotations"])
            payload = b'{"data_row":%b,"media":%b,"annotations":%b}' % (
                dumps(dr), dumps(compact["media"]), annotations)
            names.add(annotations, compact["annotations"])
            yield IndexRow(dr.get("id"), dr.get("global_key"), dr.get("external_id"),
                           dr.get("row_data"), origin, payload)

    meta = {"export": str(export_path), "fingerprint": fingerprint, "source": selection.source,
            "model_run_id": selection.model_run_id or "", "project_id": selection.project_id or ""}
    model_version = ""

    def finish() -> tuple[dict[str, str], list[str]]:
        nonlocal model_version
        model_version = _model_version(origins, selection, fingerprint)
        return {**meta, "model_version": model_version}, sorted(names.names)

    count = build_index(index_path, rows(), finish, progress=progress)
    if skipped:
        log.info("%d export rows carry no %s and were not indexed", skipped, selection.source)
    return IndexResult(count, skipped, dict(origins), model_version)
