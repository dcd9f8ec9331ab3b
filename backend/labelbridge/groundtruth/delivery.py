"""Drains the outbox into Labelbox imports (or NDJSON files), one batch at a time.

Exactly once: a batch's import name is stored before Labelbox is called, so after a crash the
import is looked up by that name instead of being sent again; uuids are deterministic, so a
re-sent annotation overrides rather than duplicates. Labelbox may keep an older label when an
annotation is imported again, so after an update the annotation's earlier labels are removed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from labelbridge.groundtruth.converter import ConversionFailed, GroundTruth, GroundTruthConverter
from labelbridge.groundtruth.outbox import Batch, Delivery, Outbox, WorkItem
from labelbridge.model.sink import ImportOutcome, LabelRef, PermanentError, Sink, TransientError

log = logging.getLogger(__name__)
CLOCK_SLACK = 5.0   # seconds of clock difference tolerated when matching labels to imports


@dataclass
class DeliveryPolicy:
    batch_size: int = 100
    max_wait: float = 2.0
    max_attempts: int = 12
    retry_base: float = 1.0
    retry_max: float = 300.0

    def backoff(self, attempts: int) -> float:
        delay = min(self.retry_max, self.retry_base * 2 ** max(attempts - 1, 0))
        return delay * random.uniform(0.5, 1.0)


class Deliverer:
    def __init__(self, outbox: Outbox, sink: Sink, converter: GroundTruthConverter,
                 policy: DeliveryPolicy, wake: threading.Event | None = None,
                 on_delivered: Callable[[list[tuple[Delivery, GroundTruth]]], None] | None = None
                 ) -> None:
        """``on_delivered``: told of every delivered annotation (the edit report)."""
        self.outbox = outbox
        self.on_delivered = on_delivered
        self.sink = sink
        self.converter = converter
        self.policy = policy
        self.wake = wake or threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----- running ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="deliver", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        self.resume_interrupted()
        while not self._stop.is_set():
            try:
                if not self.step():
                    # woken at once by the server's thread; a process polls the outbox
                    self.wake.wait(min(0.5, max(self.policy.max_wait, 0.05)))
                    self.wake.clear()
            except Exception:  # never let the worker die; the items stay in the outbox
                log.exception("delivery step failed")
                self._stop.wait(1.0)

    def drain(self, timeout: float = 60.0) -> None:
        """Deliver until nothing is due (for `labelbridge deliver --once` and tests)."""
        self.resume_interrupted()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.step(wait_for_full_batch=False):
                return

    def resume_interrupted(self) -> None:
        for batch in self.outbox.recover():
            log.info("resuming batch %d (import %s) after a restart", batch.id, batch.import_name)
            self.deliver(batch)

    def step(self, wait_for_full_batch: bool = True) -> bool:
        """Deliver one batch if one is due. False when there was nothing to do."""
        if wait_for_full_batch and not self._batch_ready():
            return False
        batch = self.outbox.claim_batch(self.policy.batch_size)
        if batch is None:
            return False
        self.deliver(batch)
        return True

    def _batch_ready(self) -> bool:
        st = self.outbox.status()
        due = st.get("due", 0)
        if due == 0:
            return False
        if due >= self.policy.batch_size:
            return True
        oldest = st.get("oldest_pending_age_s") or 0.0
        return oldest >= self.policy.max_wait

    # ----- one batch ----------------------------------------------------------------------
    def deliver(self, batch: Batch) -> None:
        upserts = [i for i in batch.items if i.kind == "upsert"]
        for item in batch.items:
            if item.kind == "delete":
                self._delete(item, batch.id)
        converted: dict[int, GroundTruth] = {}
        for item in upserts:
            try:
                converted[item.id] = self.converter.convert(item.payload)
            except (ConversionFailed, KeyError, ValueError) as exc:
                self.outbox.mark_failed([item.id], f"cannot convert: {exc}")
        empty = [i for i in upserts if i.id in converted and not converted[i.id].lines]
        for item in empty:
            self._emptied(item, converted.pop(item.id))
        sending = [i for i in upserts if i.id in converted]
        if not sending:
            return
        name = batch.import_name or f"labelbridge-{batch.id}-{uuid.uuid4().hex[:12]}"
        if batch.import_name is None:
            self.outbox.set_import_name(batch.id, name)
        lines = [line for i in sending for line in converted[i.id].lines]
        try:
            outcome = self.sink.import_lines(name, lines, resume=batch.import_name is not None)
        except TransientError as exc:
            self._retry(sending, str(exc))
            return
        except PermanentError as exc:
            self.outbox.mark_failed([i.id for i in sending], str(exc))
            return
        self._settle(sending, batch, converted, outcome)

    def _settle(self, sending: list[WorkItem], batch: Batch, converted: dict[int, GroundTruth],
                outcome: ImportOutcome) -> None:
        """Record what the import delivered. Annotations delivered for the first time are
        recorded together, in one transaction; one delivered before first has its earlier
        label removed (a Labelbox call), then is recorded on its own."""
        first: list[Delivery] = []
        again: list[tuple[WorkItem, Delivery, dict]] = []
        for item in sending:
            gt = converted[item.id]
            uuids = [line["uuid"] for line in gt.lines]
            if self._refused(item, uuids, outcome):
                continue
            done = Delivery(item.id, item.annotation_id, gt.data_row, uuids, gt.regions)
            earlier = (None if self.sink.replaces_by_uuid
                       else self.outbox.delivered_info(item.annotation_id))
            if earlier is None:
                first.append(done)
            else:
                again.append((item, done, earlier))
        if first:
            self._recorded(batch, outcome, first, converted)
        for item, done, earlier in again:
            try:
                self._remove_earlier_labels(item, done.data_row, earlier)
            except TransientError as exc:
                self._retry([item], f"imported, but removing the earlier label failed: {exc}")
                continue
            except PermanentError as exc:
                log.warning("annotation %s: earlier label not removed: %s",
                            item.annotation_id, exc)
            self._recorded(batch, outcome, [done], converted)

    def _recorded(self, batch: Batch, outcome: ImportOutcome, done: list[Delivery],
                  converted: dict[int, GroundTruth]) -> None:
        self.outbox.record_deliveries(batch.id, outcome.name, done)
        if self.on_delivered is not None:
            self.on_delivered([(d, converted[d.item_id]) for d in done])

    def _refused(self, item: WorkItem, uuids: list[str], outcome: ImportOutcome) -> bool:
        """Dead-letters the item (True) unless Labelbox accepted every line of it."""
        statuses = [outcome.statuses.get(u) for u in uuids]
        missing = [u for u, s in zip(uuids, statuses) if s is None]
        failed = [s for s in statuses if s is not None and not s.ok]
        if not (failed or missing):
            return False
        reasons = [f"{s.uuid}: {'; '.join(s.errors) or 'FAILURE'}" for s in failed]
        reasons += [f"{u}: no status from Labelbox" for u in missing]
        self.outbox.mark_failed([item.id], "Labelbox refused lines: " + " | ".join(reasons))
        return True

    # ----- removing labels ----------------------------------------------------------------
    def _owned_by(self, annotation_id: int, keep_newest: bool = False
                  ) -> Callable[[list[LabelRef]], list[str]]:
        """Which of our labels on a data row (oldest first) came from this annotation.

        When the annotation is the only one of its task Labelbox got, all of them; otherwise
        those created within one of its imports. ``keep_newest`` spares the newest label: the
        one the import that just finished created (imports run one at a time).
        """
        windows = self.outbox.import_windows(annotation_id)
        sole = self.outbox.sole_delivered_on_task(annotation_id)

        def choose(labels: list[LabelRef]) -> list[str]:
            if keep_newest:
                labels = labels[:-1]
            return [label.id for label in labels
                    if sole or any(start - CLOCK_SLACK <= label.created_at <= end + CLOCK_SLACK
                                   for start, end in windows)]
        return choose

    def _remove_earlier_labels(self, item: WorkItem, data_row: dict, earlier: dict) -> None:
        removed = self.sink.remove_labels(earlier.get("data_row") or data_row,
                                          self._owned_by(item.annotation_id, keep_newest=True))
        if removed:
            log.info("annotation %s: removed earlier labels %s", item.annotation_id, removed)

    def _delete(self, item: WorkItem, batch_id: int) -> None:
        info = self.outbox.delivered_info(item.annotation_id)
        if info is None or not info.get("data_row"):
            self.outbox.mark_skipped([item.id], "nothing of this annotation reached Labelbox")
            return
        removed = self._remove_owned(item, info["data_row"])
        if removed is None:
            return
        self.outbox.set_label_ids(item.annotation_id, removed)
        self.outbox.mark_delivered([item.id], batch_id)
        log.info("annotation %s deleted: removed labels %s", item.annotation_id, removed)

    def _emptied(self, item: WorkItem, gt: GroundTruth) -> None:
        """An annotation with nothing to import: remove what an earlier version put there."""
        if self.outbox.delivered_info(item.annotation_id) is None:
            self.outbox.mark_skipped([item.id], "the annotation has no regions Labelbox can "
                                     "import")
            return
        if self._remove_owned(item, gt.data_row) is not None:
            self.outbox.mark_skipped([item.id], "emptied: earlier labels removed")

    def _remove_owned(self, item: WorkItem, data_row: dict) -> list[str] | None:
        """Remove the labels this annotation's imports created (their ids); None when that
        failed, and the item is then retried or dead."""
        try:
            return self.sink.remove_labels(data_row, self._owned_by(item.annotation_id))
        except TransientError as exc:
            self._retry([item], str(exc))
        except PermanentError as exc:
            self.outbox.mark_failed([item.id], str(exc))
        return None

    def _retry(self, items: list[WorkItem], error: str) -> None:
        for item in items:
            if item.attempts >= self.policy.max_attempts:
                self.outbox.mark_failed([item.id], f"gave up after {item.attempts} attempts: "
                                        f"{error}")
            else:
                self.outbox.mark_retry([item.id], error, self.policy.backoff(item.attempts))
