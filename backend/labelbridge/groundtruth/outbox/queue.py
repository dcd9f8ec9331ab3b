"""The delivery queue: claims with leases, outcomes, the per-annotation normalisation, taking
over abandoned batches, requeue.

Invariants: at most one pending and one in-flight item per annotation; a batch holds at most one
item per task (Labelbox makes one label per data row and import); an item's state changes only
from in_flight (outcomes) or failed (requeue).

Leases: a claimed batch is held by its worker (``owner``) until ``lease_until``; the worker
renews the lease while it delivers. A batch whose lease ended is *abandoned*: never named (the
import was not started) its items go back to pending; named (the import may exist) the next
worker takes it over and continues with that import, looked up by name. A worker gives a named
batch back after a transient failure by postponing it (``lease_until`` = when to try again).
Claims and lease updates are non-exclusive transactions: on PostgreSQL the claims of several
replicas run at once, each choosing its items ``FOR UPDATE SKIP LOCKED`` (``postgres.py``).
"""

from __future__ import annotations

import time
from typing import Iterable, Sequence

from labelbridge.groundtruth.outbox import index
from labelbridge.groundtruth.outbox.errors import DuplicateImportName, LeaseLost, UniqueViolation
from labelbridge.groundtruth.outbox.model import Batch, Delivery, Kind, State, WorkItem
from labelbridge.groundtruth.outbox.storage import Storage, Tx, column

NEVER_DELIVERED = "annotation never delivered"
DEFAULT_LEASE_S = 30.0
ABANDONED = "recovered: claimed but never sent (the lease ended)"


def normalize(tx: Tx, annotation_ids: Iterable[int], now: float) -> None:
    """Restore "at most one pending item per annotation, and only useful ones" after items
    come back to pending (retry, recover, requeue) or an in-flight item resolves: a deleted
    annotation keeps no pending upsert, and its pending delete only if something of it may be
    in Labelbox; otherwise only the newest version stays pending."""
    ids = sorted(set(annotation_ids))
    if not ids:
        return
    states = {"pending": State.PENDING, "superseded": State.SUPERSEDED}
    tx.run("supersede_pending_upserts_of_deleted", ids=ids, now=now, upsert=Kind.UPSERT,
           **states)
    tx.run("skip_pending_deletes_never_delivered", ids=ids, now=now, reason=NEVER_DELIVERED,
           skipped=State.SKIPPED, pending=State.PENDING, in_flight=State.IN_FLIGHT,
           delete=Kind.DELETE)
    tx.run("supersede_older_pending_upserts", ids=ids, now=now, upsert=Kind.UPSERT, **states)


def close_batches(tx: Tx, batch_ids: Iterable[int | None], now: float) -> None:
    """Batches without an item in flight are closed."""
    for bid in {b for b in batch_ids if b is not None}:
        tx.run("close_batch_if_done", batch_id=bid, now=now, in_flight=State.IN_FLIGHT)


def work_items(tx: Tx, batch_id: int) -> list[WorkItem]:
    return [WorkItem.from_row(r) for r in tx.all("batch_work_items", batch_id=batch_id,
                                                  in_flight=State.IN_FLIGHT)]


def release(tx: Tx, rows: Sequence, state: State, due_at: float | None, error: str,
            now: float) -> int:
    """In-flight item ``rows`` (id, annotation_id, batch_id) -> ``state``."""
    tx.run("release_items", ids=column(rows, "id"), state=state, due=due_at, error=error,
           now=now)
    close_batches(tx, column(rows, "batch_id"), now)
    normalize(tx, column(rows, "annotation_id"), now)
    return len(rows)


def mark_delivered_tx(tx: Tx, item_ids: Sequence[int], batch_id: int) -> int:
    now = time.time()
    rows = tx.all("in_flight_among", ids=list(item_ids), batch_id=batch_id,
                  in_flight=State.IN_FLIGHT)
    tx.run("mark_items_delivered", ids=column(rows, "id"), now=now, delivered=State.DELIVERED)
    tx.many("note_upsert_delivered", [{"annotation_id": r["annotation_id"], "us": r["updated_us"],
                                       "now": now} for r in rows if r["kind"] == Kind.UPSERT])
    close_batches(tx, [batch_id], now)
    normalize(tx, column(rows, "annotation_id"), now)
    return len(rows)


def _release_abandoned_unnamed(tx: Tx, now: float) -> None:
    """Abandoned as of ``now``: items of batches never sent are due again (at once)."""
    rows = tx.all("abandoned_unnamed", now=now, in_flight=State.IN_FLIGHT)
    t = time.time()
    release(tx, rows, State.PENDING, t, ABANDONED, t)
    tx.run("close_finished_abandoned", now=now, in_flight=State.IN_FLIGHT)


def _take_over(tx: Tx, row, owner: str | None, lease_s: float, now: float) -> Batch | None:
    until = time.time() + lease_s
    if tx.run("take_over_batch", batch_id=row["id"], owner=owner, lease_until=until,
              now=now) != 1:
        return None
    return Batch(row["id"], work_items(tx, row["id"]), row["import_name"], row["attempts"] + 1,
                 owner, until)


class Queue:
    """Claims, leases and outcomes of ``Outbox``."""
    _db: Storage

    # ----- claims --------------------------------------------------------------------------
    def claim_batch(self, limit: int, now: float | None = None, *, owner: str | None = None,
                    lease_s: float = DEFAULT_LEASE_S) -> Batch | None:
        """Due pending items in arrival order: at most one per task and none of an annotation
        that has an in-flight item. They become in_flight (attempts + 1) in a new batch that
        ``owner`` holds for ``lease_s``."""
        if limit <= 0:
            return None
        with self._db.transaction(exclusive=False) as tx:
            t = time.time() if now is None else now
            chosen: list[int] = []
            tasks: set[int] = set()
            after, page = 0, limit + 8
            while len(chosen) < limit:
                rows = tx.all("claim_candidates", now=t, after=after, page=page,
                              pending=State.PENDING, in_flight=State.IN_FLIGHT)
                for row in rows:
                    task_id = row["task_id"]
                    if task_id is not None:
                        if task_id in tasks:
                            continue
                        tasks.add(task_id)
                    chosen.append(row["id"])
                    if len(chosen) >= limit:
                        break
                if len(rows) < page:
                    break
                after = rows[-1]["id"]
            if not chosen:
                return None
            now_ = time.time()
            until = now_ + lease_s
            batch_id = tx.one("insert_batch", now=now_, size=len(chosen), owner=owner,
                              lease_until=until)["id"]
            tx.run("claim_items", ids=chosen, batch_id=batch_id, now=now_,
                   in_flight=State.IN_FLIGHT)
            items = work_items(tx, batch_id)
        return Batch(batch_id, items, None, 1, owner, until)

    def ready(self, batch_size: int, max_wait: float, now: float | None = None) -> bool:
        """A full batch is due, or the earliest due item has waited ``max_wait``."""
        t = time.time() if now is None else now
        with self._db.snapshot() as tx:
            due = tx.one("due_upto", now=t, limit=batch_size, pending=State.PENDING)["n"]
            if due == 0:
                return False
            if due >= batch_size:
                return True
            earliest = tx.one("earliest_due", pending=State.PENDING)["at"]
        return earliest is not None and t - earliest >= max_wait

    def take_over(self, *, owner: str | None = None, lease_s: float = DEFAULT_LEASE_S,
                  now: float | None = None) -> Batch | None:
        """Items of abandoned batches never sent go back to pending; one abandoned batch with an
        import name is taken over (to be resumed by that name), or None."""
        t = time.time() if now is None else now
        if self._db.one("any_abandoned", now=t) is None:   # idle: no write lock taken
            return None
        with self._db.transaction() as tx:
            _release_abandoned_unnamed(tx, t)
            for row in tx.all("abandoned_named", now=t, limit=1):
                return _take_over(tx, row, owner, lease_s, t)
        return None

    def recover(self, now: float | None = None, *, owner: str | None = None,
                lease_s: float = DEFAULT_LEASE_S) -> list[Batch]:
        """``take_over`` for every abandoned batch at once (at start, or after a crash): the
        named ones are returned, to be resumed by their import names."""
        t = time.time() if now is None else now
        with self._db.transaction() as tx:
            _release_abandoned_unnamed(tx, t)
            taken = [_take_over(tx, row, owner, lease_s, t)
                     for row in tx.all("abandoned_named", now=t, limit=-1)]
        return [b for b in taken if b is not None]

    def renew_lease(self, batch_id: int, owner: str | None, lease_s: float) -> bool:
        """Hold the batch ``lease_s`` longer; False when it is no longer ``owner``'s."""
        with self._db.transaction(exclusive=False) as tx:
            return tx.run("renew_lease", batch_id=batch_id, owner=owner,
                          lease_until=time.time() + lease_s) == 1

    def postpone(self, batch_id: int, owner: str | None, delay_s: float, error: str) -> bool:
        """Give a named batch back until now + ``delay_s`` (its items stay in flight: the import
        may exist); whoever takes it over then resumes that import by name."""
        with self._db.transaction(exclusive=False) as tx:
            return tx.run("postpone_batch", batch_id=batch_id, owner=owner, error=error,
                          due=time.time() + max(0.0, delay_s)) == 1

    def release_leases(self, owner: str) -> int:
        """A worker stopping cleanly: its batches may be taken over at once."""
        with self._db.transaction() as tx:
            return tx.run("release_leases_of", owner=owner, now=time.time())

    def split_batch(self, batch_id: int, owner: str | None, reason: str,
                    lease_s: float = DEFAULT_LEASE_S) -> list[Batch]:
        """One new batch (same owner, no import name) per in-flight item; the old batch closes
        with ``reason``. For an import refused as a whole: its lines go again one by one."""
        with self._db.transaction() as tx:
            now = time.time()
            out = []
            for item in work_items(tx, batch_id):
                until = now + lease_s
                new = tx.one("insert_batch", now=now, size=1, owner=owner,
                             lease_until=until)["id"]
                tx.run("move_item", batch_id=new, item_id=item.id, now=now,
                       in_flight=State.IN_FLIGHT)
                out.append(Batch(new, [item], None, 1, owner, until))
            tx.run("close_batch", batch_id=batch_id, now=now, error=reason)
        return out

    def set_import_name(self, batch_id: int, name: str, owner: str | None = None) -> None:
        """Persist the import name before the worker calls Labelbox (resumable after a crash).
        With ``owner``, only while that worker holds the batch (else ``LeaseLost``)."""
        try:
            with self._db.transaction(exclusive=False) as tx:
                if tx.run("set_import_name", name=name, now=time.time(), batch_id=batch_id,
                          owner=owner) != 1:
                    if tx.one("batch", batch_id=batch_id) is None:
                        raise KeyError(f"no batch {batch_id}")
                    raise LeaseLost(f"batch {batch_id} is closed or held by another worker")
        except UniqueViolation as exc:
            raise DuplicateImportName(f"import name {name!r} is taken") from exc

    # ----- outcomes ------------------------------------------------------------------------
    def mark_delivered(self, item_ids: Sequence[int], batch_id: int) -> int:
        """In-flight items of this batch -> delivered. Returns how many changed state."""
        with self._db.transaction() as tx:
            return mark_delivered_tx(tx, item_ids, batch_id)

    def record_deliveries(self, batch_id: int, import_name: str,
                          deliveries: Sequence[Delivery]) -> int:
        """Items of this batch that ``import_name`` delivered: what each delivered
        (``record_delivered``), its region ids (``record_region_ids``) and the items ->
        delivered (or failed, with the reason, when part was ``refused``), in one transaction:
        one lock and one fsync for a whole batch, not three per annotation (the webhook's
        commits wait for that lock). Returns how many changed state."""
        with self._db.transaction() as tx:
            for d in deliveries:
                index.record_delivered_tx(tx, d.annotation_id, d.data_row, import_name, d.uuids)
                index.record_region_ids_tx(tx, d.annotation_id, d.regions)
            n = 0
            for d in deliveries:
                if d.refused is not None:
                    n += release(tx, tx.all("in_flight_among", ids=[d.item_id],
                                            batch_id=batch_id, in_flight=State.IN_FLIGHT),
                                 State.FAILED, None, d.refused, time.time())
            return n + mark_delivered_tx(tx, [d.item_id for d in deliveries
                                              if d.refused is None], batch_id)

    def mark_retry(self, item_ids: Sequence[int], error: str, delay_s: float,
                   now: float | None = None) -> int:
        """In-flight items -> pending again, due at now + delay_s; the error is kept."""
        t = time.time() if now is None else now
        return self._release(item_ids, State.PENDING, t + max(0.0, delay_s), error, t)

    def mark_failed(self, item_ids: Sequence[int], reason: str) -> int:
        """In-flight items -> failed (dead letter, kept with the reason)."""
        return self._release(item_ids, State.FAILED, None, reason, time.time())

    def _release(self, item_ids: Sequence[int], state: State, due_at: float | None, error: str,
                 now: float) -> int:
        with self._db.transaction() as tx:
            rows = tx.all("in_flight_among", ids=list(item_ids), batch_id=None,
                          in_flight=State.IN_FLIGHT)
            return release(tx, rows, state, due_at, error, now)

    def mark_skipped(self, item_ids: Sequence[int], reason: str) -> int:
        """In-flight or pending items -> skipped (nothing to do)."""
        with self._db.transaction() as tx:
            now = time.time()
            rows = tx.all("skippable_among", ids=list(item_ids), in_flight=State.IN_FLIGHT,
                          pending=State.PENDING)
            tx.run("skip_items", ids=column(rows, "id"), reason=reason, now=now,
                   skipped=State.SKIPPED)
            close_batches(tx, column(rows, "batch_id"), now)
            normalize(tx, column(rows, "annotation_id"), now)
        return len(rows)

    def requeue(self, item_ids: list[int] | None = None, now: float | None = None) -> int:
        """Failed (dead) items -> pending, attempts reset, due now. Stale ones (a newer version
        exists, or the annotation was deleted and never delivered) become superseded/skipped
        instead. Returns how many items are pending again."""
        with self._db.transaction() as tx:
            t = time.time() if now is None else now
            if item_ids is None:
                rows = tx.all("failed_items", failed=State.FAILED)
            else:
                rows = tx.all("failed_among", ids=list(item_ids), failed=State.FAILED)
            ids = column(rows, "id")
            tx.run("requeue_items", ids=ids, now=t, pending=State.PENDING)
            # a requeued item of an annotation that already has a pending item: keep one
            normalize(tx, column(rows, "annotation_id"), t)
            return tx.one("count_pending_among", ids=ids, pending=State.PENDING)["n"]
