"""Closing the loop in Labelbox (each part off by default): the ground truth of delivered
annotations goes back to the model run their prediction came from.

* ``attach``: their labels are registered with the run (``model_run.upsert_labels``), so
  Labelbox's own model metrics compare the run's predictions with the corrected labels;
* ``metrics``: each data row's edit figures are sent to the run as custom metrics (counts of
  each outcome, summed, and the mean IoU of moved regions). The SDK accepts metric-only labels
  (see ``labelbox/model_runs.py``); the uuid of each line is derived from (run, data row,
  metric), so a second send updates instead of adding.

Annotations wait in the edit report with ``loop = 'pending'``; a transient failure leaves them
pending for the next pass, a permanent one records its reason.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from typing import Protocol

from labelbridge.groundtruth.edit_report import EditStore
from labelbridge.groundtruth.edits import OUTCOMES
from labelbridge.labelbox.model_runs import Metric
from labelbridge.model.ids import LABELBRIDGE_NAMESPACE
from labelbridge.model.sink import LineStatus, PermanentError, TransientError

log = logging.getLogger(__name__)
PREFIX = "labelbridge_"


class RunClient(Protocol):  # labelbox.model_runs.ModelRunClient
    def newest_labels(self, project_id: str, data_row_ids) -> dict[str, str]: ...
    def attach_labels(self, run_id: str, label_ids: list[str]) -> None: ...
    def send_metrics(self, run_id: str, name: str, metrics: dict[str, list[Metric]],
                     uuid_of) -> dict[str, LineStatus]: ...


def row_metrics(figures: dict) -> list[Metric]:
    out = [Metric(PREFIX + o, float(figures[o] or 0)) for o in OUTCOMES]
    if figures.get("mean_iou_moved") is not None:
        out.append(Metric(PREFIX + "moved_iou", float(figures["mean_iou_moved"]), mean=True))
    return out


class LoopCloser:
    def __init__(self, store: EditStore, client: RunClient, project_id: str, *,
                 attach: bool, metrics: bool) -> None:
        self.store, self.client, self.project_id = store, client, project_id
        self.attach, self.metrics = attach, metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Send what is pending; the number of annotations done."""
        by_run: dict[str | None, list[tuple[int, str | None]]] = defaultdict(list)
        for annotation_id, run_id, data_row_id in self.store.pending_loop():
            by_run[run_id].append((annotation_id, data_row_id))
        done = 0
        for run_id, items in by_run.items():
            ids = [a for a, _ in items]
            if run_id is None:
                self.store.set_loop(ids, "skipped: the prediction came from no model run")
                continue
            try:
                self._send(run_id, ids, [r for _, r in items if r])
            except TransientError as exc:
                log.warning("model run %s: will try again: %s", run_id, exc)
                continue
            except PermanentError as exc:
                log.warning("model run %s: gave up: %s", run_id, exc)
                self.store.set_loop(ids, f"failed: {exc}")
                continue
            self.store.set_loop(ids, "done")
            done += len(ids)
        return done

    def _send(self, run_id: str, annotation_ids: list[int], data_rows: list[str]) -> None:
        if self.attach:
            labels = self.client.newest_labels(self.project_id, data_rows)
            self.client.attach_labels(run_id, sorted(set(labels.values())))
        if self.metrics:
            figures = self.store.row_figures(annotation_ids)
            statuses = self.client.send_metrics(
                run_id, f"labelbridge-edits-{uuid.uuid4().hex[:12]}",
                {row: row_metrics(f) for row, f in figures.items()},
                lambda row, name: str(uuid.uuid5(LABELBRIDGE_NAMESPACE,
                                                 f"metric:{run_id}:{row}:{name}")))
            refused = [f"{s.uuid}: {'; '.join(s.errors)}" for s in statuses.values() if not s.ok]
            if refused:
                raise PermanentError("Labelbox refused metric lines: " + " | ".join(refused[:3]))

    # ----- running ------------------------------------------------------------------------
    def start(self, interval: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True,
                                        name="close-loop")
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.run_once()
            except Exception:  # never let the thread die; the rows stay pending
                log.exception("closing the loop failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
