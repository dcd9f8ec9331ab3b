"""Where predictions come from: an export file, one Labelbox model run, or the newest run of a
model. Each source says cheaply what it offers now (a fingerprint: file sizes and times, or
the run's id and ``updatedAt``) and builds an index from it; an index whose meta holds the
same fingerprint is not built again, so a restart does not export an unchanged run again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Protocol

from labelbridge.labelbox.export import ExportError, Selection
from labelbridge.labelbox.model_runs import ModelRunClient, RunInfo
from labelbridge.model.sink import PermanentError
from labelbridge.predictions import parts, store
from labelbridge.predictions.indexer import IndexResult, export_fingerprint, index_export
from labelbridge.predictions.run_index import index_rows
from labelbridge.predictions.store import PredictionStore

if TYPE_CHECKING:
    from labelbridge.labelbox.masks import MaskSource

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


class Offer(NamedTuple):
    """What a source holds right now."""
    fingerprint: str
    describe: str
    run: RunInfo | None = None


class Source(Protocol):
    def offer(self) -> Offer: ...

    def build(self, offer: Offer, index_path: Path, progress: Progress | None = None,
              on_total: Callable[[int | None], None] | None = None) -> IndexResult: ...


class ExportFileSource:
    """``masks``: how mask PNGs are read while indexing (None: not read, each a loss)."""

    def __init__(self, path: Path, selection: Selection, workers: int | None = None,
                 masks: MaskSource | None = None) -> None:
        self.path, self.selection, self.workers, self.masks = path, selection, workers, masks

    def offer(self) -> Offer:
        return Offer(export_fingerprint(self.path, self.selection, self.masks), str(self.path))

    def build(self, offer: Offer, index_path: Path, progress: Progress | None = None,
              on_total: Callable[[int | None], None] | None = None) -> IndexResult:
        return index_export(self.path, index_path, self.selection, progress, self.workers,
                            masks=self.masks)


class RunSource:
    """A fixed run (``run_id``) or the newest run of ``model_id`` whose name matches
    ``pattern``. ``version_from``: the model version is the run's id or its name. ``masks``:
    how the run's mask PNGs are read while indexing (with the API key)."""

    def __init__(self, client: ModelRunClient, *, run_id: str | None = None,
                 model_id: str | None = None, pattern: str | None = None,
                 version_from: str = "id", source: str = "predictions",
                 masks: MaskSource | None = None) -> None:
        if bool(run_id) == bool(model_id):
            raise ValueError("give exactly one of run_id and model_id")
        self.client, self.run_id, self.model_id = client, run_id, model_id
        self.pattern = re.compile(pattern) if pattern else None
        self.version_from, self.source, self.masks = version_from, source, masks

    def offer(self) -> Offer:
        if self.run_id:
            run = self.client.run(self.run_id)
        else:
            found = self.client.newest_run(self.model_id, self.pattern)  # type: ignore[arg-type]
            if found is None:
                wanted = f" matching {self.pattern.pattern!r}" if self.pattern else ""
                raise PermanentError(f"model {self.model_id} has no model run{wanted}")
            run = found
        key = (f"{store.FORMAT}:{self.selection(run)!r}:{run.updated_at!r}:"
               f"{self.model_version(run)}" + (f":{self.masks.describe()}" if self.masks else ""))
        return Offer(hashlib.sha1(key.encode()).hexdigest(),
                     f"model run {run.name!r} ({run.id})", run)

    def selection(self, run: RunInfo) -> Selection:
        return Selection(self.source, run.id)  # type: ignore[arg-type]

    def model_version(self, run: RunInfo) -> str:
        return run.name if self.version_from == "name" and run.name else run.id

    def build(self, offer: Offer, index_path: Path, progress: Progress | None = None,
              on_total: Callable[[int | None], None] | None = None) -> IndexResult:
        run = offer.run
        assert run is not None
        exported = self.client.export(run.id)
        if on_total:
            on_total(exported.total)
        meta = {"export": f"labelbox:{offer.describe}", "fingerprint": offer.fingerprint,
                "model_version": self.model_version(run), "run_name": run.name,
                "model_id": run.model_id}
        try:
            return index_rows(exported.rows, index_path, self.selection(run), meta,
                              f"model run {run.id}", progress, masks=self.masks)
        except ExportError as exc:  # Labelbox's rows, not the user's file: this run is broken
            raise PermanentError(str(exc)) from exc


def indexed_fingerprint(index_path: Path) -> str | None:
    if not index_path.exists():
        return None
    s = PredictionStore(index_path)
    try:
        return s.meta().get("fingerprint")
    finally:
        s.close()


def remove_dead_builds(index_path: Path) -> None:
    """Temporary files of builds whose process died (an interrupted export)."""
    for p in index_path.parent.glob(f"{index_path.name}.build-*"):
        pid = p.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not parts.alive(int(pid)):
            p.unlink(missing_ok=True)


def ensure(source: Source, index_path: Path, progress: Progress | None = None,
           on_total: Callable[[int | None], None] | None = None) -> IndexResult | None:
    """Build the index unless it already holds what the source offers. None: not built."""
    offer = source.offer()
    if indexed_fingerprint(index_path) == offer.fingerprint:
        return None
    remove_dead_builds(index_path)
    log.info("indexing %s", offer.describe)
    result = source.build(offer, index_path, progress, on_total)
    log.info("indexed %d data rows from %s (model version %s)", result.rows, offer.describe,
             result.model_version)
    return result
