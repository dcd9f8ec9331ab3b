"""Builds the prediction index from a stream of export rows (a Labelbox model-run export read
through the SDK), in bounded memory.

The rows arrive already parsed, one at a time; each is cut to its compact payload and written
in batches by ``store.build_index``, which replaces the index only once the last row is in: a
stream that fails part-way leaves the index that was there.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import orjson

from labelbridge.labelbox import export
from labelbridge.predictions.indexer import IndexResult, gc_paused
from labelbridge.predictions.store import IndexRow, IndexTail, build_index

if TYPE_CHECKING:
    from labelbridge.labelbox.masks import MaskSource


def index_rows(rows: Iterable[Any], index_path: Path, selection: export.Selection,
               meta: dict[str, str], source: str,
               progress: Callable[[int], None] | None = None,
               masks: MaskSource | None = None) -> IndexResult:
    """Stream ``rows`` into a fresh index at ``index_path``. ``meta`` must hold the
    ``fingerprint`` and ``model_version``; ``source`` names the stream in error messages;
    ``masks`` reads the rows' mask PNGs (Labelbox URLs) into their payloads."""
    origins: Counter[str] = Counter()
    names = export.FeatureNames()
    skipped = 0

    def index_rows_of() -> Iterator[IndexRow]:
        nonlocal skipped
        for n, row in enumerate(rows, 1):
            if not isinstance(row, dict) or not isinstance(row.get("data_row"), dict):
                raise export.ExportError(f"{source}: row {n}: not an export-v2 row (no "
                                         "'data_row' object)")
            picked = export.compact_row(row, selection)
            if picked is None:
                skipped += 1
                continue
            origin, compact = picked
            if masks is not None:
                from labelbridge.labelbox.masks import resolve_row
                resolve_row(compact, masks, None)
            if origin:
                origins[origin] += 1
            payload = orjson.dumps(compact)
            names.add(payload, compact["annotations"])
            dr = compact["data_row"]
            yield IndexRow(n, dr.get("id"), dr.get("global_key"), dr.get("external_id"),
                           dr.get("row_data"), origin, payload)

    def finish() -> IndexTail:
        return IndexTail({**meta, "source": selection.source,
                          "model_run_id": selection.model_run_id or "",
                          "project_id": selection.project_id or ""}, sorted(names.names))

    with gc_paused():
        count = build_index(index_path, index_rows_of(), finish, progress=progress)
    return IndexResult(count, skipped, dict(origins), meta["model_version"], readers=1)
