"""What delivery does, counted at the sink seam: imports, lines, errors by kind, import time.

The delivery worker usually runs as a child process (``labelbridge deliver``). The server starts
it with ``PROMETHEUS_MULTIPROC_DIR`` set, so prometheus-client keeps these figures in files
there, and the server's ``/metrics`` reads them (``service.metrics``); counters survive a
restart of the child. Run in the server (``LABELBRIDGE_DELIVERY_WORKER=thread``) they are
ordinary in-process metrics.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from labelbridge.model.sink import ImportOutcome, LabelRef, PermanentError, Sink, TransientError

# Every figure of this module lives here, one registry per process.
REGISTRY = CollectorRegistry(auto_describe=True)
IMPORT_BUCKETS = (0.05, 0.25, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

imports = Counter("labelbridge_sink_imports", "Imports sent to the sink (Labelbox or files), "
                  "by outcome: ok, transient_error, permanent_error", ["outcome"],
                  registry=REGISTRY)
lines = Counter("labelbridge_sink_lines", "NDJSON lines the sink reported on, by status "
                "(ok, failed)", ["status"], registry=REGISTRY)
errors = Counter("labelbridge_sink_errors", "Sink errors by operation (import, remove), kind "
                 "(transient: retried; permanent: dead letter) and the underlying error class",
                 ["operation", "kind", "error"], registry=REGISTRY)
import_seconds = Histogram("labelbridge_sink_import_duration_seconds", "Time one import took, "
                           "from upload to the last line status", buckets=IMPORT_BUCKETS,
                           registry=REGISTRY)
removals = Counter("labelbridge_sink_label_removals", "Earlier labels removed from the sink "
                   "(an update or delete of an annotation)", registry=REGISTRY)


def _error(operation: str, exc: BaseException) -> None:
    kind = "transient" if isinstance(exc, TransientError) else "permanent"
    cause = exc.__cause__
    name = type(cause).__name__ if cause is not None and cause is not exc else "none"
    errors.labels(operation, kind, name).inc()


class MeteredSink:
    """A ``Sink`` that counts what passes through it and changes nothing else."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self.replaces_by_uuid = sink.replaces_by_uuid

    def import_lines(self, name: str, lines_: list[dict], resume: bool = False) -> ImportOutcome:
        started = time.monotonic()
        try:
            outcome = self._sink.import_lines(name, lines_, resume)
        except (TransientError, PermanentError) as exc:
            imports.labels("transient_error" if isinstance(exc, TransientError)
                           else "permanent_error").inc()
            _error("import", exc)
            raise
        finally:
            import_seconds.observe(time.monotonic() - started)
        imports.labels("ok").inc()
        ok = sum(1 for s in outcome.statuses.values() if s.ok)
        lines.labels("ok").inc(ok)
        lines.labels("failed").inc(len(outcome.statuses) - ok)
        return outcome

    def remove_labels(self, data_row: dict, choose: Callable[[list[LabelRef]], Iterable[str]],
                      annotation_id: int, uuids: list[str]) -> list[str]:
        try:
            removed = self._sink.remove_labels(data_row, choose, annotation_id, uuids)
        except (TransientError, PermanentError) as exc:
            _error("remove", exc)
            raise
        removals.inc(len(removed))
        return removed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)
