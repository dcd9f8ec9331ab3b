"""Drains the outbox into Labelbox imports (or NDJSON files), one batch at a time.

Exactly once: a batch's import name is stored before Labelbox is called; from then on every
later step for that batch (a failed poll or status read, a lost answer, a crash, another worker
taking over an abandoned batch) continues with the import of that name (``resume=True``); a new
import of the same items happens only when the sink says nothing of the first exists
(``ImportRejected``). uuids are deterministic, so a re-sent annotation overrides rather than
duplicates. Labelbox may keep an older label when an annotation is imported again, so after an
update the annotation's earlier labels are removed (``removal.py``).

Whatever goes wrong with one annotation (it cannot be converted, Labelbox refuses a line)
dead-letters that annotation alone, with the reason; its batch-mates go on. When Labelbox
refused only some of its lines, it holds a label with the others: that delivery is recorded
all the same (and an earlier label of the annotation removed), so a later delivery (an update,
``outbox retry``) replaces that label and a delete removes it, as for any delivered annotation.
A claimed batch is leased (``leases.py``); whatever goes wrong with the batch gives it back, and
if even that fails (disk full) its lease runs out and it is taken over. Retention runs between
batches.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from labelbridge.groundtruth.converter import ConversionFailed, GroundTruth, GroundTruthConverter
from labelbridge.groundtruth.leases import LeaseKeeper
from labelbridge.groundtruth.outbox import (DEFAULT_LEASE_S, Batch, Delivery, LeaseLost, Outbox,
                                            OutboxError, WorkItem)
from labelbridge.groundtruth.removal import Removal
from labelbridge.model.sink import (ImportOutcome, ImportRejected, PermanentError, Sink,
                                    TransientError)

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0
PRUNE_CHUNK = 500


@dataclass
class DeliveryPolicy:
    batch_size: int = 100
    max_wait: float = 2.0
    max_attempts: int = 12
    retry_base: float = 1.0
    retry_max: float = 300.0
    lease_s: float = DEFAULT_LEASE_S
    retention_days: float = 30.0      # 0: keep everything

    def backoff(self, attempts: int) -> float:
        delay = min(self.retry_max, self.retry_base * 2 ** max(attempts - 1, 0))
        return delay * random.uniform(0.5, 1.0)


class Deliverer:
    def __init__(self, outbox: Outbox, sink: Sink, converter: GroundTruthConverter,
                 policy: DeliveryPolicy, wake: threading.Event | None = None,
                 on_delivered: Callable[[list[tuple[Delivery, GroundTruth]]], None] | None = None,
                 on_deleted: Callable[[list[int]], None] | None = None) -> None:
        """``on_delivered``: told of every delivered annotation, an emptied one too (the edit
        report); ``on_deleted``: of every annotation whose deletion reached Labelbox."""
        self.outbox = outbox
        self.on_delivered = on_delivered
        self.on_deleted = on_deleted
        self.sink = sink
        self.converter = converter
        self.policy = policy
        self.wake = wake or threading.Event()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leases = LeaseKeeper(outbox, self.owner, policy.lease_s)
        self.removal = Removal(outbox, sink, self._retry)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_prune = 0.0

    # ----- running ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="deliver", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.leases.stop()
        try:   # what this worker held may be taken over at once
            self.outbox.release_leases(self.owner)
        except OutboxError as exc:
            log.warning("leases not released (they run out by themselves): %s", exc)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.step():
                    self.prune()
                    # woken at once by the server's thread; a process polls the outbox
                    self.wake.wait(min(0.5, max(self.policy.max_wait, 0.05)))
                    self.wake.clear()
            except Exception as exc:  # never let the worker die; the work stays in the outbox
                if isinstance(exc, OutboxError):
                    log.error("delivery paused: %s", exc)
                else:
                    log.exception("delivery step failed")
                self._stop.wait(1.0)

    def drain(self, timeout: float = 60.0) -> None:
        """Deliver until nothing is due (for `labelbridge deliver --once` and tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.step(wait_for_full_batch=False):
                return

    def step(self, wait_for_full_batch: bool = True) -> bool:
        """Deliver one batch: an abandoned one first, else a new one if one is due. False when
        there was nothing to do."""
        p = self.policy
        batch = self.outbox.take_over(owner=self.owner, lease_s=p.lease_s)
        if batch is not None:
            log.info("batch %d: taken over (import %s, attempt %d)", batch.id, batch.import_name,
                     batch.attempts)
        else:
            if wait_for_full_batch and not self.outbox.ready(p.batch_size, p.max_wait):
                return False
            batch = self.outbox.claim_batch(p.batch_size, owner=self.owner, lease_s=p.lease_s)
            if batch is None:
                return False
        self.deliver(batch)
        return True

    def prune(self) -> int:
        """Retention, a chunk at a time between batches (never a long write lock)."""
        days = self.policy.retention_days
        if days <= 0 or time.monotonic() < self._next_prune:
            return 0
        try:
            n = self.outbox.prune(time.time() - days * 86400, limit=PRUNE_CHUNK)
        except OutboxError as exc:
            log.warning("retention postponed: %s", exc)
            n = 0
        self._next_prune = time.monotonic() + (0.2 if n >= PRUNE_CHUNK else PRUNE_EVERY_S)
        if n:
            log.info("retention: %d rows older than %g days removed", n, days)
        return n

    # ----- one batch ----------------------------------------------------------------------
    def deliver(self, batch: Batch) -> None:
        with self.leases.holding(batch.id):
            try:
                self._deliver(batch)
            except LeaseLost as exc:
                log.warning("batch %d: %s; left to its new holder", batch.id, exc)
            except OutboxError as exc:   # cannot even give it back: its lease runs out
                log.error("batch %d: the outbox failed (%s); it is recovered when its lease "
                          "ends", batch.id, exc)

    def _deliver(self, batch: Batch) -> None:
        converted = self._prepare(batch)
        sending = [i for i in batch.items if i.id in converted]
        if not sending:
            return
        name = batch.import_name
        if name is None:
            name = f"labelbridge-{batch.id}-{uuid.uuid4().hex[:12]}"
            try:
                self.outbox.set_import_name(batch.id, name, self.owner)
            except LeaseLost:
                raise
            except Exception as exc:   # nothing was sent: the items may go again
                self._retry(sending, f"the import name was not stored: {exc}")
                return
        try:
            self._import(batch, name, sending, converted)
        except (LeaseLost, OutboxError):   # recording failed: its lease runs out, and the
            raise                          # next holder resumes the import by name
        except Exception as exc:   # the import may exist: continue with it, by name
            log.exception("batch %d: import %s failed", batch.id, name)
            self._resume_later(batch, name, f"{type(exc).__name__}: {exc}", transient=False)

    def _prepare(self, batch: Batch) -> dict[int, GroundTruth]:
        """Deletes and emptied annotations are handled here; the rest converted. Whatever goes
        wrong with one item dead-letters it alone."""
        converted: dict[int, GroundTruth] = {}
        for item in batch.items:
            try:
                if item.kind == "delete":
                    if self.removal.delete(item, batch.id):
                        self._tell(self.on_deleted, [item.annotation_id])
                elif (gt := self._convert(item)) is None:
                    continue
                elif gt.lines:
                    converted[item.id] = gt
                elif self.removal.emptied(item, gt):
                    self._tell(self.on_delivered, [(Delivery(
                        item.id, item.annotation_id, gt.data_row, [], gt.regions), gt)])
            except OutboxError:
                raise
            except Exception as exc:
                log.exception("annotation %s: delivery failed", item.annotation_id)
                self.outbox.mark_failed([item.id], f"{type(exc).__name__}: {exc}")
        return converted

    def _convert(self, item: WorkItem) -> GroundTruth | None:
        """The annotation's NDJSON, or None when it was dead-lettered: any exception of the
        converter (a bug there is this annotation's problem, not its batch's)."""
        try:
            return self.converter.convert(item.payload)
        except OutboxError:
            raise
        except ConversionFailed as exc:
            reason = str(exc)
        except Exception as exc:
            log.exception("annotation %s: the converter failed", item.annotation_id)
            reason = f"{type(exc).__name__}: {exc}"
        self.outbox.mark_failed([item.id], f"cannot convert: {reason}")
        return None

    def _import(self, batch: Batch, name: str, sending: list[WorkItem],
                converted: dict[int, GroundTruth]) -> None:
        lines = [line for i in sending for line in converted[i.id].lines]
        try:
            outcome = self.sink.import_lines(name, lines, resume=batch.import_name is not None)
        except TransientError as exc:
            self._resume_later(batch, name, str(exc), transient=True)
            return
        except ImportRejected as exc:   # nothing of it exists: the lines may go again
            if len(sending) == 1:
                self.outbox.mark_failed([sending[0].id], str(exc))
                return
            log.warning("batch %d: import %s refused as a whole (%s); sending its %d "
                        "annotations one by one", batch.id, name, exc, len(sending))
            for single in self.outbox.split_batch(batch.id, self.owner, str(exc),
                                                  self.policy.lease_s):
                self.deliver(single)
            return
        except PermanentError as exc:
            self.outbox.mark_failed([i.id for i in sending], str(exc))
            return
        self._settle(sending, batch, converted, outcome)

    def _resume_later(self, batch: Batch, name: str, error: str, transient: bool) -> None:
        """Give the named batch back; whoever takes it over next continues with import
        ``name``. A transient failure is retried for as long as it lasts (the import may
        exist: dead-lettering it would invite a duplicate); anything else until max_attempts."""
        if not transient and batch.attempts >= self.policy.max_attempts:
            self.outbox.mark_failed([i.id for i in batch.items],
                                    f"gave up after {batch.attempts} attempts at import "
                                    f"{name}: {error}")
            return
        delay = self.policy.backoff(batch.attempts)
        self.outbox.postpone(batch.id, self.owner, delay, error)
        log.info("batch %d: %s; import %s is resumed by name in %.1f s", batch.id, error, name,
                 delay)

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
            accepted, refused = self._accepted(uuids, outcome)
            if not accepted:   # nothing of it reached Labelbox
                self.outbox.mark_failed([item.id], refused or "")
                continue
            regions = gt.regions if refused is None else [
                r for r in gt.regions if r[1] in set(accepted)]
            done = Delivery(item.id, item.annotation_id, gt.data_row, accepted, regions, refused)
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
                self.removal.earlier_labels(item, done.data_row, earlier)
            except TransientError as exc:
                self._retry([item], f"imported, but removing the earlier label failed: {exc}")
                continue
            except OutboxError:
                raise
            except Exception as exc:   # the import worked: record it, say what is left over
                log.warning("annotation %s: earlier label not removed: %s",
                            item.annotation_id, exc)
            self._recorded(batch, outcome, [done], converted)

    def _recorded(self, batch: Batch, outcome: ImportOutcome, done: list[Delivery],
                  converted: dict[int, GroundTruth]) -> None:
        self.outbox.record_deliveries(batch.id, outcome.name, done)
        self._tell(self.on_delivered, [(d, converted[d.item_id]) for d in done
                                       if d.refused is None])

    @staticmethod
    def _tell(hook: Callable[[list], None] | None, what: list) -> None:
        """A hook (the edit report) is not delivery: its failure must not redo the work."""
        if hook is not None:
            try:
                hook(what)
            except Exception:
                log.exception("the delivery hook failed")

    @staticmethod
    def _accepted(uuids: list[str], outcome: ImportOutcome) -> tuple[list[str], str | None]:
        """The uuids of an item's lines Labelbox accepted, and why the others were not (None
        when none was refused)."""
        statuses = [outcome.statuses.get(u) for u in uuids]
        accepted = [u for u, s in zip(uuids, statuses) if s is not None and s.ok]
        if len(accepted) == len(uuids):
            return accepted, None
        reasons = [f"{s.uuid}: {'; '.join(s.errors) or 'FAILURE'}" for s in statuses
                   if s is not None and not s.ok]
        reasons += [f"{u}: no status from Labelbox" for u, s in zip(uuids, statuses) if s is None]
        return accepted, "Labelbox refused lines: " + " | ".join(reasons)

    def _retry(self, items: list[WorkItem], error: str) -> None:
        """Items never sent (or whose follow-up failed) -> pending again, with backoff."""
        for item in items:
            if item.attempts >= self.policy.max_attempts:
                self.outbox.mark_failed([item.id], f"gave up after {item.attempts} attempts: "
                                        f"{error}")
            else:
                self.outbox.mark_retry([item.id], error, self.policy.backoff(item.attempts))
