"""Append decisions: what an incoming event becomes (queued, duplicate, superseded, skipped,
ignored), annotation incarnations, the annotation index's newest versions.

Rules (tests/unit/test_outbox*.py name them):
1. an event seen before (same annotation, kind and instant, however spelled) is a duplicate;
2. a newer upsert supersedes a pending one; an older one arriving late is superseded at once;
3. a delete queues only when something of the annotation may be in Labelbox; upserts after it
   are ignored;
4. ignored events are logged, never delivered;
5. every event keeps the annotation index (annotation -> project, task) current.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import NamedTuple

from labelbridge.groundtruth.outbox.model import (INCARNATION_STEP, AppendResult,
                                                  IncomingEvent, Kind, Outcome, State,
                                                  parse_timestamp)
from labelbridge.groundtruth.outbox.storage import Row, Storage, Tx
from labelbridge.groundtruth.outbox.writer import GroupWriter


KINDS = frozenset(Kind)


@dataclass(frozen=True)
class Prepared:
    """A validated event with its idempotency key (computed before any transaction)."""
    ev: IncomingEvent
    us: int | None
    key: str
    payload: bytes
    created_us: int | None = None


def dedup_key(kind: str, aid: int, us: int | None, reason: str | None) -> str:
    if kind == Kind.DELETE:
        return f"d:{aid}"
    if us is not None:  # upserts, and ignored events that carry a version: one key space
        return f"u:{aid}:{us}"
    return f"i:{aid}:{reason or ''}"


def _rekey(p: Prepared, key: int) -> Prepared:
    """The same event, for the annotation incarnation ``key``."""
    ev = replace(p.ev, annotation_id=key)
    return Prepared(ev, p.us, dedup_key(ev.kind, key, p.us, ev.reason), p.payload, p.created_us)


def prepare(ev: IncomingEvent) -> Prepared:
    """Validate one event and compute its idempotency key."""
    if not isinstance(ev, IncomingEvent):
        raise TypeError(f"expected IncomingEvent, got {type(ev).__name__}")
    if ev.kind not in KINDS:
        raise ValueError(f"unknown event kind {ev.kind!r}")
    if isinstance(ev.annotation_id, bool) or not isinstance(ev.annotation_id, int):
        raise ValueError(f"annotation_id must be an int, got {ev.annotation_id!r}")
    payload = ev.payload if ev.payload is not None else b""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ValueError("payload must be bytes")
    payload = bytes(payload)
    if not isinstance(ev.source, str) or not ev.source:
        raise ValueError("source must be a non-empty string")
    if ev.kind == Kind.UPSERT and ev.updated_at is None:
        raise ValueError("an upsert needs updated_at")
    us = None if ev.kind == Kind.DELETE or ev.updated_at is None else parse_timestamp(
        ev.updated_at)
    created = parse_timestamp(ev.incarnation) if ev.incarnation else None
    return Prepared(ev, us, dedup_key(ev.kind, ev.annotation_id, us, ev.reason), payload,
                    created)


class EventRow(NamedTuple):
    """A new row of ``events`` (queries.sql ``insert_event``, by position)."""
    id: int
    received_at: float
    source: str
    kind: str
    annotation_id: int
    project_id: int | None
    task_id: int | None
    updated_at: str | None
    updated_us: int | None
    dedup_key: str
    outcome: str
    reason: str | None
    label_config_hash: str | None
    payload: bytes
    ignored_at: float | None


class ItemRow(NamedTuple):
    """A new row of ``items`` (``insert_item``, by position)."""
    id: int
    event_id: int
    kind: str
    annotation_id: int
    project_id: int | None
    task_id: int | None
    updated_at: str | None
    updated_us: int | None
    label_config_hash: str | None
    state: str
    next_attempt_at: float | None
    last_error: str | None
    superseded_by: int | None
    created_at: float
    changed_at: float
    done_at: float | None


class AnnotationRow(NamedTuple):
    """What an append changes of an ``annotations`` row (``update_annotation``,
    ``insert_annotation``, by position)."""
    project_id: int | None
    task_id: int | None
    latest_updated_at: str | None
    latest_us: int | None
    latest_item_id: int | None
    seen_updated_at: str | None
    seen_us: int | None
    deleted_at: float | None
    delete_item_id: int | None
    changed_at: float
    annotation_id: int


class Counts:
    __slots__ = ("accepted", "duplicates", "ignored", "superseded")

    def __init__(self) -> None:
        self.accepted = self.duplicates = self.ignored = self.superseded = 0

    def result(self) -> AppendResult:
        return AppendResult(self.accepted, self.duplicates, self.ignored, self.superseded)


class _Ann:
    """An annotation's row, read once per append transaction and updated in memory."""
    __slots__ = ("exists", "project_id", "task_id", "latest_at", "latest_us", "latest_item",
                 "seen_at", "seen_us", "deleted_at", "delete_item", "delivered_at", "pending",
                 "in_flight", "dirty")

    def __init__(self, row: Row | None) -> None:
        self.exists = row is not None
        if row is None:
            self.project_id = self.task_id = self.latest_at = self.latest_us = None
            self.latest_item = self.seen_at = self.seen_us = self.deleted_at = None
            self.delete_item = self.delivered_at = None
        else:
            self.project_id, self.task_id = row["project_id"], row["task_id"]
            self.latest_at, self.latest_us = row["latest_updated_at"], row["latest_us"]
            self.latest_item = row["latest_item_id"]
            self.seen_at, self.seen_us = row["seen_updated_at"], row["seen_us"]
            self.deleted_at, self.delete_item = row["deleted_at"], row["delete_item_id"]
            self.delivered_at = row["delivered_at"]
        self.pending: int | None = None      # the pending upsert item, if any
        self.in_flight = False
        self.dirty = False

    def row(self, aid: int, now: float) -> AnnotationRow:
        return AnnotationRow(self.project_id, self.task_id, self.latest_at, self.latest_us,
                             self.latest_item, self.seen_at, self.seen_us, self.deleted_at,
                             self.delete_item, now, aid)


def resolve_incarnations(tx: Tx, requests: list[list[Prepared]]) -> None:
    """Give every event the key of its annotation incarnation (in place, in order).

    An upsert names its incarnation by the annotation's creation time: a known one keeps its
    key, the first one of an id is the id itself, and a new one after that (the id was reused)
    gets the next key. Deletes (ids only) and events without a creation time go to the newest
    incarnation.
    """
    known: dict[int, list[list]] = {}
    ids = list({p.ev.annotation_id for req in requests for p in req})
    for r in tx.all("incarnations_among", ids=ids):
        known.setdefault(r["ls_id"], []).append([r["key"], r["created_us"]])
    for req in requests:
        for i, p in enumerate(req):
            ls = p.ev.annotation_id
            rows = known.setdefault(ls, [])
            if p.created_us is None or p.ev.kind == Kind.DELETE:
                key = rows[-1][0] if rows else ls
            else:
                match = [k for k, created in rows if created == p.created_us]
                if match:
                    key = match[0]
                elif rows and rows[-1][1] is None:   # told its creation time only now
                    key = rows[-1][0]
                    rows[-1][1] = p.created_us
                    tx.run("set_incarnation_created", created_us=p.created_us, key=key)
                else:
                    key = rows[-1][0] + INCARNATION_STEP if rows else ls
                    rows.append([key, p.created_us])
                    tx.run("insert_incarnation", key=key, ls_id=ls, created_us=p.created_us)
            if key != ls:
                req[i] = _rekey(p, key)


def _read_annotations(tx: Tx, ids: list[int]) -> dict[int, _Ann]:
    anns = {r["annotation_id"]: _Ann(r) for r in tx.all("annotations_by_id", ids=ids)}
    for r in tx.all("pending_upserts_of", ids=ids, pending=State.PENDING, upsert=Kind.UPSERT):
        if r["annotation_id"] in anns:
            anns[r["annotation_id"]].pending = r["id"]
    for r in tx.all("in_flight_annotations_among", ids=ids, in_flight=State.IN_FLIGHT):
        if r["annotation_id"] in anns:
            anns[r["annotation_id"]].in_flight = True
    return anns


def _known(p: Prepared, a: _Ann) -> bool:
    """Already received, though retention pruned its event: the annotation index keeps the
    newest versions (whose events are the only ones these can be)."""
    if p.ev.kind == Kind.DELETE:
        return a.deleted_at is not None
    return p.us is not None and p.us in (a.latest_us, a.seen_us)


def _decide(p: Prepared, a: _Ann) -> tuple[Outcome, str | None]:
    ev = p.ev
    if ev.kind == Kind.IGNORED:
        return Outcome.IGNORED, ev.reason
    if ev.kind == Kind.UPSERT:
        if a.deleted_at is not None:
            return Outcome.IGNORED, "annotation deleted"
        if a.latest_us is not None and p.us < a.latest_us:
            return Outcome.SUPERSEDED, "older than the newest version"
        return Outcome.QUEUED, None
    if a.delivered_at is not None or a.in_flight:
        return Outcome.QUEUED, None   # something may be in Labelbox: delete it there
    return Outcome.SKIPPED, "annotation never delivered"


def append_results(tx: Tx, requests: list[list[Prepared]], now: float) -> list[AppendResult]:
    """``append_tx`` for the group-commit writer: one result per caller."""
    return [counts.result() for counts in append_tx(tx, requests, now)]


def append_tx(tx: Tx, requests: list[list[Prepared]], now: float) -> list[Counts]:
    """Apply the events of several callers inside one transaction.

    The hot path of the webhook, so it reads what it needs in a few set-based queries, decides
    every event in memory (in order, so duplicates and several versions of one annotation
    inside the group behave exactly as if appended one by one) and writes with ``many``.
    """
    resolve_incarnations(tx, requests)
    flat = [p for req in requests for p in req]
    seen_keys = {r["dedup_key"] for r in tx.all("seen_dedup_keys",
                                                 keys=list({p.key for p in flat}))}
    anns = _read_annotations(tx, list({p.ev.annotation_id for p in flat}))
    ids = tx.one("next_ids")
    next_event, next_item = ids["event"], ids["item"]

    events: list[EventRow] = []
    new_items: dict[int, ItemRow] = {}
    old_superseded: list[dict] = []
    results: list[Counts] = []
    total_dups = 0
    by_outcome: Counter[str] = Counter()

    def supersede(a: _Ann, by: int) -> int:
        if a.pending is None:
            return 0
        row = new_items.get(a.pending)
        if row is not None:
            new_items[a.pending] = row._replace(state=State.SUPERSEDED, next_attempt_at=None,
                                                superseded_by=by, done_at=now)
        else:
            old_superseded.append({"id": a.pending, "by": by, "now": now,
                                   "superseded": State.SUPERSEDED, "pending": State.PENDING})
        a.pending = None
        return 1

    for req in requests:
        counts = Counts()
        results.append(counts)
        for p in req:
            if p.key in seen_keys:
                counts.duplicates += 1
                continue
            seen_keys.add(p.key)
            ev = p.ev
            aid = ev.annotation_id
            a = anns.get(aid)
            if a is None:
                a = anns[aid] = _Ann(None)
            if _known(p, a):
                counts.duplicates += 1
                continue
            project = ev.project_id if ev.project_id is not None else a.project_id
            task = ev.task_id if ev.task_id is not None else a.task_id
            outcome, reason = _decide(p, a)
            by_outcome[outcome] += 1
            event_id = next_event
            next_event += 1
            events.append(EventRow(event_id, now, ev.source, ev.kind, aid, ev.project_id,
                                   ev.task_id, ev.updated_at, p.us, p.key, outcome, reason,
                                   ev.label_config_hash, p.payload,
                                   now if outcome == Outcome.IGNORED else None))
            if outcome == Outcome.IGNORED:
                counts.ignored += 1
                if a.deleted_at is not None:
                    continue  # a deleted annotation: nothing left to learn
            else:
                counts.accepted += 1
                item_id = next_item
                next_item += 1
                state = State.PENDING if outcome == Outcome.QUEUED else State(outcome)
                pending = state == State.PENDING
                new_items[item_id] = ItemRow(
                    item_id, event_id, ev.kind, aid, project, task, ev.updated_at, p.us,
                    ev.label_config_hash, state, now if pending else None, reason,
                    a.latest_item if outcome == Outcome.SUPERSEDED else None, now, now,
                    None if pending else now)
                if outcome == Outcome.SUPERSEDED:
                    counts.superseded += 1
                else:  # a newer version, or a delete: a pending upsert is now moot
                    counts.superseded += supersede(a, item_id)
                    if ev.kind == Kind.UPSERT:
                        a.latest_at, a.latest_us, a.latest_item = ev.updated_at, p.us, item_id
                        a.pending = item_id
                    else:
                        a.deleted_at, a.delete_item = now, item_id
            # the annotation index (rule 5) and the newest version seen (reconciliation)
            a.project_id, a.task_id = project, task
            if ev.kind != Kind.DELETE and p.us is not None and (
                    a.seen_us is None or p.us > a.seen_us):
                a.seen_at, a.seen_us = ev.updated_at, p.us
            a.dirty = True
        total_dups += counts.duplicates

    if events:
        tx.many("insert_event", events)
    if new_items:
        tx.many("insert_item", new_items.values())
    tallies = {f"events:{k}": n for k, n in by_outcome.items()}
    tallies["events"] = len(events)
    tallies.update((f"items:{k}", n) for k, n in Counter(
        row.state for row in new_items.values()).items())
    tx.many("add_tallies", [{"name": k, "n": n} for k, n in tallies.items() if n])
    if old_superseded:
        tx.many("supersede_pending_item", old_superseded)
    tx.many("update_annotation", [a.row(aid, now) for aid, a in anns.items()
                                  if a.dirty and a.exists])
    tx.many("insert_annotation", [a.row(aid, now) for aid, a in anns.items()
                                  if a.dirty and not a.exists])
    if total_dups:
        tx.run("add_to_counter", name="duplicates", n=total_dups)
    return results


class Appending:
    """``Outbox.append`` / ``append_async``."""
    _db: Storage
    _writer: GroupWriter

    def append(self, events: list[IncomingEvent]) -> AppendResult:
        """Record events in one transaction; durable (committed) when this returns."""
        prepared = [prepare(ev) for ev in events]
        if not prepared:
            return AppendResult(0, 0, 0, 0)
        with self._db.transaction() as tx:
            counts = append_tx(tx, [prepared], time.time())[0]
        return counts.result()

    async def append_async(self, events: list[IncomingEvent]) -> AppendResult:
        """Group commit: queued to the single writer thread, which commits everything queued
        in one transaction; the future resolves only after that commit."""
        prepared = [prepare(ev) for ev in events]
        if not prepared:
            return AppendResult(0, 0, 0, 0)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._writer.submit(prepared, loop, future)
        # A caller cancelled while waiting still gets its events written (the request is
        # already queued); only the answer is dropped.
        return await future
