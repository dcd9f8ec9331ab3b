"""Durable delivery queue (SQLite, WAL): events in, batches out, states, retries.

Label Studio sends each webhook once, with a 1 s timeout and no retry, so whatever the HTTP
server hands us must be on disk before it answers. The outbox knows nothing of Label Studio or
Labelbox formats: payloads are opaque bytes.

Tables
* ``events``       the full event log: every accepted (non-duplicate) event, with received_at,
                   source, the opaque payload and what became of it (``outcome``). The unique
                   ``dedup_key`` makes appends idempotent.
* ``items``        work items for the delivery worker, one per accepted upsert/delete event:
                   pending -> in_flight -> delivered | failed, plus superseded and skipped.
* ``annotations``  the annotation index (annotation id -> project, task), the newest version
                   seen, deletion, and what the worker recorded on delivery (data row, label ids).
* ``batches``      claimed batches and their Labelbox import name (set before the import starts).
* ``annotation_imports``, ``region_uuid``  traceability of deliveries.
* ``label_configs``, ``cursors``, ``rejected``, ``counters``  small bookkeeping tables.

Concurrency: one writer connection per process, guarded by a lock, used by every write (sync
calls and the group-commit thread); readers use per-thread connections. Other processes (the
CLI) share the file through WAL and the busy timeout. Every write is a short
``BEGIN IMMEDIATE`` transaction committed with ``synchronous=FULL``.
"""

from __future__ import annotations

import asyncio
import queue
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

import orjson

SCHEMA_VERSION = 1
REJECTED_BODY_CAP = 5 * 1024 * 1024
STATES = ("pending", "in_flight", "delivered", "failed", "superseded", "skipped")
_SQL_VARS = 500
# The first incarnation of Label Studio annotation N is key N; a later one (an id reused after
# a deletion) is N + k * INCARNATION_STEP. Label Studio ids stay far below it.
INCARNATION_STEP = 1 << 40


def ls_annotation_id(key: int) -> int:
    """Label Studio's annotation id of an outbox annotation key."""
    return key % INCARNATION_STEP

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  received_at REAL NOT NULL,
  source TEXT NOT NULL,
  kind TEXT NOT NULL,                  -- upsert | delete | ignored (as received)
  annotation_id INTEGER NOT NULL,
  project_id INTEGER,
  task_id INTEGER,
  updated_at TEXT,                     -- Label Studio's own string
  updated_us INTEGER,                  -- the same instant, microseconds since the epoch (UTC)
  dedup_key TEXT NOT NULL UNIQUE,
  outcome TEXT NOT NULL,               -- queued | superseded | skipped | ignored
  reason TEXT,
  label_config_hash TEXT,
  payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_annotation ON events(annotation_id);
CREATE INDEX IF NOT EXISTS events_ignored ON events(id) WHERE outcome = 'ignored';

CREATE TABLE IF NOT EXISTS items (
  id INTEGER PRIMARY KEY,
  event_id INTEGER NOT NULL UNIQUE REFERENCES events(id),
  kind TEXT NOT NULL,                  -- upsert | delete
  annotation_id INTEGER NOT NULL,
  project_id INTEGER,
  task_id INTEGER,
  updated_at TEXT,
  updated_us INTEGER,
  label_config_hash TEXT,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL,
  batch_id INTEGER,
  last_error TEXT,
  superseded_by INTEGER,
  created_at REAL NOT NULL,
  changed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_state ON items(state, id);
CREATE INDEX IF NOT EXISTS items_annotation ON items(annotation_id, state);
CREATE INDEX IF NOT EXISTS items_batch ON items(batch_id);

CREATE TABLE IF NOT EXISTS annotations (
  annotation_id INTEGER PRIMARY KEY,
  project_id INTEGER,
  task_id INTEGER,
  latest_updated_at TEXT,              -- newest upsert accepted (orders the work)
  latest_us INTEGER,
  latest_item_id INTEGER,
  seen_updated_at TEXT,                -- newest version seen, upsert or ignored (reconciliation)
  seen_us INTEGER,
  deleted_at REAL,
  delete_item_id INTEGER,
  delivered_at REAL,                   -- set once something of it reached Labelbox
  delivered_us INTEGER,                -- newest upsert version delivered
  data_row TEXT,                       -- JSON, recorded by the worker
  label_ids TEXT,                      -- JSON list
  first_seen_at REAL NOT NULL,
  changed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_project ON annotations(project_id);
CREATE INDEX IF NOT EXISTS annotations_task ON annotations(task_id);

CREATE TABLE IF NOT EXISTS batches (
  id INTEGER PRIMARY KEY,
  created_at REAL NOT NULL,
  size INTEGER NOT NULL,
  import_name TEXT,
  import_set_at REAL,
  closed_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_import_name ON batches(import_name)
  WHERE import_name IS NOT NULL;

CREATE TABLE IF NOT EXISTS annotation_imports (
  annotation_id INTEGER NOT NULL,
  import_name TEXT NOT NULL,
  recorded_at REAL NOT NULL,
  uuids TEXT NOT NULL,                 -- JSON list
  PRIMARY KEY (annotation_id, import_name)
);

CREATE TABLE IF NOT EXISTS region_uuid (
  annotation_id INTEGER NOT NULL,
  uuid TEXT NOT NULL,
  ls_region_id TEXT,
  data_row TEXT,                       -- JSON
  lb_feature_id TEXT,
  updated_at REAL NOT NULL,
  PRIMARY KEY (annotation_id, uuid)
);
CREATE INDEX IF NOT EXISTS region_uuid_uuid ON region_uuid(uuid);
CREATE INDEX IF NOT EXISTS region_uuid_region ON region_uuid(ls_region_id);

CREATE TABLE IF NOT EXISTS label_configs (
  hash TEXT PRIMARY KEY, xml TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
  name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
  id INTEGER PRIMARY KEY,
  received_at REAL NOT NULL,
  reason TEXT NOT NULL,
  headers TEXT NOT NULL,               -- JSON object
  body BLOB NOT NULL,                  -- at most REJECTED_BODY_CAP bytes
  body_size INTEGER NOT NULL,          -- size as received
  truncated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS incarnations (
  key INTEGER PRIMARY KEY,             -- the annotation_id used everywhere else in this file
  ls_id INTEGER NOT NULL,              -- the Label Studio annotation id
  created_us INTEGER,                  -- its creation time, NULL when never told
  UNIQUE (ls_id, created_us)
);
"""


# --------------------------------------------------------------------------- model

@dataclass(frozen=True)
class IncomingEvent:
    kind: Literal["upsert", "delete", "ignored"]
    annotation_id: int
    project_id: int | None
    task_id: int | None
    updated_at: str | None
    payload: bytes
    source: str
    reason: str | None = None
    label_config_hash: str | None = None
    # When the annotation was created (ISO 8601). Label Studio on SQLite reuses the ids of
    # deleted annotations; the creation time tells a new annotation from an old one.
    incarnation: str | None = None


@dataclass(frozen=True)
class WorkItem:
    id: int
    kind: Literal["upsert", "delete"]
    annotation_id: int
    project_id: int | None
    task_id: int | None
    updated_at: str | None
    payload: bytes
    attempts: int
    label_config_hash: str | None
    data_row: dict | None


@dataclass(frozen=True)
class AppendResult:
    accepted: int
    duplicates: int
    ignored: int
    superseded: int


@dataclass(frozen=True)
class Batch:
    id: int
    items: list[WorkItem]
    import_name: str | None


@dataclass(frozen=True)
class Delivery:
    """What one import delivered for one in-flight item (``Outbox.record_deliveries``)."""
    item_id: int
    annotation_id: int
    data_row: dict
    uuids: list[str]
    regions: list[tuple[str, str, str | None]]  # (ls_region_id, uuid, lb_feature_id)


class OutboxClosed(RuntimeError):
    pass


# --------------------------------------------------------------------------- helpers

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_timestamp(value: str) -> int:
    """ISO 8601 -> integer microseconds since the epoch (UTC; naive means UTC).

    Exact integers, so two spellings of one instant ("...Z", "+00:00", another offset) are
    the same version, and ordering never depends on string comparison.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"updated_at must be an ISO 8601 string, got {value!r}")
    s = value.strip()
    if s[-1] in "zZ":
        s = s[:-1] + "+00:00"
    s = _LONG_FRACTION.sub(r"\1", s)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"updated_at is not ISO 8601: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class _Prepared:
    ev: IncomingEvent
    us: int | None
    key: str
    payload: bytes
    created_us: int | None = None


def _dedup_key(kind: str, aid: int, us: int | None, reason: str | None) -> str:
    if kind == "delete":
        return f"d:{aid}"
    if us is not None:  # upserts, and ignored events that carry a version: one key space
        return f"u:{aid}:{us}"
    return f"i:{aid}:{reason or ''}"


def _rekey(p: _Prepared, key: int) -> _Prepared:
    """The same event, for the annotation incarnation ``key``."""
    ev = replace(p.ev, annotation_id=key)
    return _Prepared(ev, p.us, _dedup_key(ev.kind, key, p.us, ev.reason), p.payload,
                     p.created_us)


def _prepare(ev: IncomingEvent) -> _Prepared:
    """Validate one event and compute its idempotency key (before any transaction)."""
    if not isinstance(ev, IncomingEvent):
        raise TypeError(f"expected IncomingEvent, got {type(ev).__name__}")
    if ev.kind not in ("upsert", "delete", "ignored"):
        raise ValueError(f"unknown event kind {ev.kind!r}")
    if isinstance(ev.annotation_id, bool) or not isinstance(ev.annotation_id, int):
        raise ValueError(f"annotation_id must be an int, got {ev.annotation_id!r}")
    payload = ev.payload if ev.payload is not None else b""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ValueError("payload must be bytes")
    payload = bytes(payload)
    if not isinstance(ev.source, str) or not ev.source:
        raise ValueError("source must be a non-empty string")
    if ev.kind == "upsert" and ev.updated_at is None:
        raise ValueError("an upsert needs updated_at")
    us = None if ev.kind == "delete" or ev.updated_at is None else parse_timestamp(ev.updated_at)
    created = parse_timestamp(ev.incarnation) if ev.incarnation else None
    return _Prepared(ev, us, _dedup_key(ev.kind, ev.annotation_id, us, ev.reason), payload,
                     created)


def _chunks(seq: Sequence, n: int = _SQL_VARS) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


class _Counts:
    __slots__ = ("accepted", "duplicates", "ignored", "superseded")

    def __init__(self) -> None:
        self.accepted = self.duplicates = self.ignored = self.superseded = 0

    def result(self) -> AppendResult:
        return AppendResult(self.accepted, self.duplicates, self.ignored, self.superseded)


class _Request:
    __slots__ = ("prepared", "loop", "future")

    def __init__(self, prepared: list[_Prepared], loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future) -> None:
        self.prepared = prepared
        self.loop = loop
        self.future = future


def _resolve_all(answers: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, result, exc in answers:
        if future.done():  # the caller was cancelled; its events are written all the same
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


class _Ann:
    """An annotation's row, read once per append transaction and updated in memory."""
    COLUMNS = ("annotation_id, project_id, task_id, latest_updated_at, latest_us,"
               " latest_item_id, seen_updated_at, seen_us, deleted_at, delete_item_id,"
               " delivered_at")
    __slots__ = ("exists", "project_id", "task_id", "latest_at", "latest_us", "latest_item",
                 "seen_at", "seen_us", "deleted_at", "delete_item", "delivered_at", "pending",
                 "in_flight", "dirty")

    def __init__(self, row: tuple | None) -> None:
        self.exists = row is not None
        (_, self.project_id, self.task_id, self.latest_at, self.latest_us, self.latest_item,
         self.seen_at, self.seen_us, self.deleted_at, self.delete_item,
         self.delivered_at) = row if row is not None else (None,) * 11
        self.pending: int | None = None      # the pending upsert item, if any
        self.in_flight = False
        self.dirty = False

    def values(self) -> tuple:
        return (self.project_id, self.task_id, self.latest_at, self.latest_us,
                self.latest_item, self.seen_at, self.seen_us, self.deleted_at,
                self.delete_item)


_STOP = object()


# --------------------------------------------------------------------------- outbox

class Outbox:
    """The durable delivery queue. Thread-safe; one instance per process."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 10.0,
                 max_group_events: int = 5000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_ms = int(busy_timeout_s * 1000)
        self._max_group = max_group_events
        self._closed = False
        self._closing = False
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._local = threading.local()
        self._wlock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        # With the group-commit writer running, checkpoints move off the commit path to a
        # background thread (a checkpoint inside a commit is a latency spike for every caller
        # in that group).
        self._checkpointer: threading.Thread | None = None
        self._ckpt_wake = threading.Event()
        self._ckpt_stop = threading.Event()
        self._wconn = self._connect()
        self._init_schema()

    # -- connections ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                               timeout=self._busy_ms / 1000)
        conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        self._check_open()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _init_schema(self) -> None:
        c = self._wconn
        if c.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        with self._write() as c:
            if c.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxClosed("outbox is closed")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short BEGIN IMMEDIATE transaction on the writer connection."""
        with self._wlock:
            self._check_open()
            c = self._wconn
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
        if self._checkpointer is not None:
            self._ckpt_wake.set()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot on this thread's connection."""
        c = self._reader()
        c.execute("BEGIN")
        try:
            yield c
        finally:
            c.execute("COMMIT")

    def close(self) -> None:
        """Finish queued async appends, stop the writer thread, close every connection."""
        with self._writer_lock:
            if self._closing:
                return
            self._closing = True  # no new async request is queued after the stop mark
            writer = self._writer
            if writer is not None:
                self._queue.put(_STOP)
        if writer is not None:
            writer.join()
        if self._checkpointer is not None:
            self._ckpt_stop.set()
            self._ckpt_wake.set()
            self._checkpointer.join()
        with self._wlock:
            self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- append -----------------------------------------------------------------------

    def append(self, events: list[IncomingEvent]) -> AppendResult:
        """Record events in one transaction; durable (committed) when this returns."""
        prepared = [_prepare(ev) for ev in events]
        if not prepared:
            return AppendResult(0, 0, 0, 0)
        with self._write() as c:
            counts = self._append_tx(c, [prepared], time.time())[0]
        return counts.result()

    async def append_async(self, events: list[IncomingEvent]) -> AppendResult:
        """Group commit: queued to the single writer thread, which commits everything queued
        in one transaction; the future resolves only after that commit."""
        prepared = [_prepare(ev) for ev in events]
        if not prepared:
            return AppendResult(0, 0, 0, 0)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._writer_lock:
            if self._closing:
                raise OutboxClosed("outbox is closed")
            self._ensure_writer()
            self._queue.put(_Request(prepared, loop, future))
        # A caller cancelled while waiting still gets its events written (the request is
        # already queued); only the answer is dropped.
        return await future

    def _ensure_writer(self) -> None:
        """Start the writer and checkpoint threads (caller holds _writer_lock)."""
        if self._writer is not None:
            return
        ckpt_conn = self._connect()
        with self._wlock:
            self._wconn.execute("PRAGMA wal_autocheckpoint=0")
        ck = threading.Thread(target=self._checkpoint_loop, args=(ckpt_conn,),
                              name="outbox-checkpoint", daemon=True)
        ck.start()
        self._checkpointer = ck
        t = threading.Thread(target=self._writer_loop, name="outbox-writer", daemon=True)
        t.start()
        self._writer = t

    def _checkpoint_loop(self, conn: sqlite3.Connection, interval_s: float = 0.25) -> None:
        """PASSIVE checkpoints (never blocking writers) at most every interval after writes."""
        while True:
            self._ckpt_wake.wait()
            if self._ckpt_stop.wait(interval_s):
                break
            self._ckpt_wake.clear()
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                pass  # busy or closing: the next round (or SQLite itself at close) catches up

    def _writer_loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            group = [first]
            size = len(first.prepared)
            idle = 0
            while size < self._max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    # Callers woken by the previous commit may still be queueing: give them
                    # the GIL once before committing, or groups alternate large and small.
                    if idle >= 2:
                        break
                    idle += 1
                    time.sleep(0)
                    continue
                idle = 0
                if nxt is _STOP:
                    stop = True
                    break
                group.append(nxt)
                size += len(nxt.prepared)
            self._commit_group(group)

    def _commit_group(self, group: list[_Request]) -> None:
        outcomes: list[tuple[_Request, Any, BaseException | None]]
        try:
            with self._write() as c:
                results = self._append_tx(c, [r.prepared for r in group], time.time())
            outcomes = [(r, n.result(), None) for r, n in zip(group, results)]
        except Exception as exc:
            if len(group) == 1:
                outcomes = [(group[0], None, exc)]
            else:  # nothing committed: retry one transaction per caller, so one bad request
                outcomes = []  # cannot fail the others
                for r in group:
                    try:
                        with self._write() as c:
                            n = self._append_tx(c, [r.prepared], time.time())[0]
                        outcomes.append((r, n.result(), None))
                    except Exception as exc1:
                        outcomes.append((r, None, exc1))
        except BaseException as exc:  # never leave a caller waiting forever
            outcomes = [(r, None, exc) for r in group]
        # one wake-up per event loop, not one per caller
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for req, result, error in outcomes:
            by_loop.setdefault(req.loop, []).append((req.future, result, error))
        for loop, answers in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, answers)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting
                pass

    @staticmethod
    def _resolve_incarnations(c: sqlite3.Connection, requests: list[list[_Prepared]]) -> None:
        """Give every event the key of its annotation incarnation (in place, in order).

        An upsert names its incarnation by the annotation's creation time: a known one keeps
        its key, the first one of an id is the id itself, and a new one after that (the id was
        reused) gets the next key. Deletes (ids only) and events without a creation time go to
        the newest incarnation.
        """
        known: dict[int, list[list]] = {}
        for req in requests:
            for i, p in enumerate(req):
                ls = p.ev.annotation_id
                if ls not in known:
                    known[ls] = [list(r) for r in c.execute(
                        "SELECT key, created_us FROM incarnations WHERE ls_id = ? ORDER BY key",
                        (ls,))]
                rows = known[ls]
                if p.created_us is None or p.ev.kind == "delete":
                    key = rows[-1][0] if rows else ls
                else:
                    match = [k for k, created in rows if created == p.created_us]
                    if match:
                        key = match[0]
                    elif rows and rows[-1][1] is None:   # told its creation time only now
                        key = rows[-1][0]
                        rows[-1][1] = p.created_us
                        c.execute("UPDATE incarnations SET created_us = ? WHERE key = ?",
                                  (p.created_us, key))
                    else:
                        key = rows[-1][0] + INCARNATION_STEP if rows else ls
                        rows.append([key, p.created_us])
                        c.execute("INSERT INTO incarnations(key, ls_id, created_us) VALUES "
                                  "(?, ?, ?)", (key, ls, p.created_us))
                if key != ls:
                    req[i] = _rekey(p, key)

    def _append_tx(self, c: sqlite3.Connection, requests: list[list[_Prepared]],
                   now: float) -> list[_Counts]:
        """Apply the events of several callers inside one transaction.

        The hot path of the webhook, so it reads what it needs in a few set-based queries,
        decides every event in memory (in order, so duplicates and several versions of one
        annotation inside the group behave exactly as if appended one by one) and writes with
        ``executemany``. Ids are assigned here: the transaction holds the write lock.
        """
        self._resolve_incarnations(c, requests)
        flat = [p for req in requests for p in req]
        seen_keys: set[str] = set()
        for part in _chunks(list({p.key for p in flat})):
            marks = ",".join("?" * len(part))
            seen_keys.update(k for (k,) in c.execute(
                f"SELECT dedup_key FROM events WHERE dedup_key IN ({marks})", part))
        anns: dict[int, _Ann] = {}
        for part in _chunks(list({p.ev.annotation_id for p in flat})):
            marks = ",".join("?" * len(part))
            for row in c.execute(f"SELECT {_Ann.COLUMNS} FROM annotations"
                                 f" WHERE annotation_id IN ({marks})", part):
                anns[row[0]] = _Ann(row)
            for aid, item_id in c.execute(
                    f"SELECT annotation_id, id FROM items WHERE annotation_id IN ({marks})"
                    f" AND state = 'pending' AND kind = 'upsert'", part):
                if aid in anns:
                    anns[aid].pending = item_id
            for (aid,) in c.execute(
                    f"SELECT DISTINCT annotation_id FROM items WHERE annotation_id IN ({marks})"
                    f" AND state = 'in_flight'", part):
                if aid in anns:
                    anns[aid].in_flight = True
        next_event = c.execute("SELECT coalesce(max(id), 0) + 1 FROM events").fetchone()[0]
        next_item = c.execute("SELECT coalesce(max(id), 0) + 1 FROM items").fetchone()[0]

        event_rows: list[tuple] = []
        new_items: dict[int, list] = {}
        old_superseded: list[tuple] = []
        results: list[_Counts] = []
        total_dups = 0

        def supersede(a: _Ann, by: int) -> int:
            if a.pending is None:
                return 0
            row = new_items.get(a.pending)
            if row is not None:
                row[9], row[10], row[12] = "superseded", None, by
            else:
                old_superseded.append((by, now, a.pending))
            a.pending = None
            return 1

        for req in requests:
            counts = _Counts()
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
                project = ev.project_id if ev.project_id is not None else a.project_id
                task = ev.task_id if ev.task_id is not None else a.task_id
                reason: str | None = None
                if ev.kind == "ignored":
                    outcome, reason = "ignored", ev.reason
                elif ev.kind == "upsert":
                    if a.deleted_at is not None:
                        outcome, reason = "ignored", "annotation deleted"
                    elif a.latest_us is not None and p.us < a.latest_us:
                        outcome, reason = "superseded", "older than the newest version"
                    else:
                        outcome = "queued"
                elif a.delivered_at is not None or a.in_flight:
                    outcome = "queued"  # something may be in Labelbox: delete it there
                else:
                    outcome, reason = "skipped", "annotation never delivered"

                event_id = next_event
                next_event += 1
                event_rows.append((event_id, now, ev.source, ev.kind, aid, ev.project_id,
                                   ev.task_id, ev.updated_at, p.us, p.key, outcome, reason,
                                   ev.label_config_hash, p.payload))
                if outcome == "ignored":
                    counts.ignored += 1
                    if a.deleted_at is not None:
                        continue  # a deleted annotation: nothing left to learn
                else:
                    counts.accepted += 1
                    item_id = next_item
                    next_item += 1
                    state = "pending" if outcome == "queued" else outcome
                    new_items[item_id] = [
                        item_id, event_id, ev.kind, aid, project, task, ev.updated_at, p.us,
                        ev.label_config_hash, state, now if state == "pending" else None,
                        reason, a.latest_item if outcome == "superseded" else None, now, now]
                    if outcome == "superseded":
                        counts.superseded += 1
                    else:  # a newer version, or a delete: a pending upsert is now moot
                        counts.superseded += supersede(a, item_id)
                        if ev.kind == "upsert":
                            a.latest_at, a.latest_us, a.latest_item = ev.updated_at, p.us, item_id
                            a.pending = item_id
                        else:
                            a.deleted_at, a.delete_item = now, item_id
                # the annotation index (rule 5) and the newest version seen (reconciliation)
                a.project_id, a.task_id = project, task
                if ev.kind != "delete" and p.us is not None and (
                        a.seen_us is None or p.us > a.seen_us):
                    a.seen_at, a.seen_us = ev.updated_at, p.us
                a.dirty = True
            total_dups += counts.duplicates

        if event_rows:
            c.executemany(
                "INSERT INTO events(id, received_at, source, kind, annotation_id, project_id,"
                " task_id, updated_at, updated_us, dedup_key, outcome, reason,"
                " label_config_hash, payload) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", event_rows)
        if new_items:
            c.executemany(
                "INSERT INTO items(id, event_id, kind, annotation_id, project_id, task_id,"
                " updated_at, updated_us, label_config_hash, state, next_attempt_at, last_error,"
                " superseded_by, created_at, changed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                new_items.values())
        if old_superseded:
            c.executemany("UPDATE items SET state = 'superseded', superseded_by = ?,"
                          " next_attempt_at = NULL, changed_at = ? WHERE id = ?"
                          " AND state = 'pending'", old_superseded)
        c.executemany(
            "UPDATE annotations SET project_id = ?, task_id = ?, latest_updated_at = ?,"
            " latest_us = ?, latest_item_id = ?, seen_updated_at = ?, seen_us = ?,"
            " deleted_at = ?, delete_item_id = ?, changed_at = ? WHERE annotation_id = ?",
            [(*a.values(), now, aid) for aid, a in anns.items() if a.dirty and a.exists])
        c.executemany(
            "INSERT INTO annotations(project_id, task_id, latest_updated_at, latest_us,"
            " latest_item_id, seen_updated_at, seen_us, deleted_at, delete_item_id,"
            " changed_at, first_seen_at, annotation_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(*a.values(), now, now, aid) for aid, a in anns.items()
             if a.dirty and not a.exists])
        if total_dups:
            c.execute("INSERT INTO counters(name, value) VALUES ('duplicates', ?)"
                      " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                      (total_dups,))
        return results

    # -- per-annotation normalisation after an outcome -------------------------------

    def _normalize(self, c: sqlite3.Connection, annotation_ids: Iterable[int],
                   now: float) -> None:
        """Restore "at most one pending item per annotation, and only useful ones" after items
        come back to pending (retry, recover, requeue) or an in-flight item resolves."""
        for aid in set(annotation_ids):
            ann = c.execute("SELECT latest_us, latest_item_id, deleted_at, delete_item_id,"
                            " delivered_at FROM annotations WHERE annotation_id = ?",
                            (aid,)).fetchone()
            if ann is None:
                continue
            latest_us, latest_item, deleted_at, delete_item, delivered_at = ann
            if deleted_at is not None:
                c.execute("UPDATE items SET state = 'superseded', superseded_by = ?,"
                          " next_attempt_at = NULL, changed_at = ? WHERE annotation_id = ?"
                          " AND state = 'pending' AND kind = 'upsert'", (delete_item, now, aid))
                in_flight = c.execute("SELECT 1 FROM items WHERE annotation_id = ? AND state ="
                                      " 'in_flight' LIMIT 1", (aid,)).fetchone()
                if in_flight is None and delivered_at is None:
                    c.execute("UPDATE items SET state = 'skipped', next_attempt_at = NULL,"
                              " last_error = 'annotation never delivered', changed_at = ?"
                              " WHERE annotation_id = ? AND state = 'pending' AND kind ="
                              " 'delete'", (now, aid))
            elif latest_us is not None:
                c.execute("UPDATE items SET state = 'superseded', superseded_by = ?,"
                          " next_attempt_at = NULL, changed_at = ? WHERE annotation_id = ?"
                          " AND state = 'pending' AND kind = 'upsert' AND updated_us < ?",
                          (latest_item, now, aid, latest_us))

    # -- claiming ---------------------------------------------------------------------

    def claim_batch(self, limit: int, now: float | None = None) -> Batch | None:
        """Due pending items in arrival order: at most one per task and none of an annotation
        that has an in-flight item. They become in_flight (attempts + 1) in a new batch."""
        if limit <= 0:
            return None
        with self._write() as c:
            t = time.time() if now is None else now
            rows = c.execute(
                "SELECT i.id, i.task_id FROM items i WHERE i.state = 'pending'"
                " AND i.next_attempt_at <= ? AND NOT EXISTS (SELECT 1 FROM items j"
                " WHERE j.annotation_id = i.annotation_id AND j.state = 'in_flight')"
                " ORDER BY i.id", (t,))
            chosen: list[int] = []
            tasks: set[int] = set()
            for item_id, task_id in rows:
                if task_id is not None:
                    if task_id in tasks:
                        continue
                    tasks.add(task_id)
                chosen.append(item_id)
                if len(chosen) >= limit:
                    break
            rows.close()
            if not chosen:
                return None
            batch_id = c.execute("INSERT INTO batches(created_at, size) VALUES (?, ?)",
                                 (time.time(), len(chosen))).lastrowid
            changed = time.time()
            for part in _chunks(chosen):
                marks = ",".join("?" * len(part))
                c.execute(f"UPDATE items SET state = 'in_flight', attempts = attempts + 1,"
                          f" batch_id = ?, changed_at = ? WHERE id IN ({marks})",
                          (batch_id, changed, *part))
            items = self._work_items(c, "i.batch_id = ? AND i.state = 'in_flight'", (batch_id,))
        return Batch(batch_id, items, None)

    @staticmethod
    def _work_items(c: sqlite3.Connection, where: str, args: tuple) -> list[WorkItem]:
        out = []
        for row in c.execute(
                "SELECT i.id, i.kind, i.annotation_id, i.project_id, i.task_id, i.updated_at,"
                " e.payload, i.attempts, i.label_config_hash, a.data_row FROM items i"
                " JOIN events e ON e.id = i.event_id"
                " LEFT JOIN annotations a ON a.annotation_id = i.annotation_id"
                f" WHERE {where} ORDER BY i.id", args):
            out.append(WorkItem(row[0], row[1], row[2], row[3], row[4], row[5], bytes(row[6]),
                                row[7], row[8], _loads(row[9])))
        return out

    def set_import_name(self, batch_id: int, name: str) -> None:
        """Persist the import name before the worker calls Labelbox (resumable after a crash)."""
        with self._write() as c:
            cur = c.execute("UPDATE batches SET import_name = ?, import_set_at = ? WHERE id = ?",
                            (name, time.time(), batch_id))
            if cur.rowcount != 1:
                raise KeyError(f"no batch {batch_id}")

    # -- outcomes ---------------------------------------------------------------------

    def _in_flight_rows(self, c: sqlite3.Connection, item_ids: Sequence[int],
                        extra: str = "", args: tuple = ()) -> list[tuple]:
        rows: list[tuple] = []
        for part in _chunks(list(item_ids)):
            marks = ",".join("?" * len(part))
            rows += c.execute(f"SELECT id, kind, annotation_id, updated_us, batch_id FROM items"
                              f" WHERE id IN ({marks}) AND state = 'in_flight'{extra}",
                              (*part, *args)).fetchall()
        return rows

    def _close_batches(self, c: sqlite3.Connection, batch_ids: Iterable[int | None],
                       now: float) -> None:
        for bid in set(b for b in batch_ids if b is not None):
            if c.execute("SELECT 1 FROM items WHERE batch_id = ? AND state = 'in_flight' LIMIT 1",
                         (bid,)).fetchone() is None:
                c.execute("UPDATE batches SET closed_at = ? WHERE id = ? AND closed_at IS NULL",
                          (now, bid))

    def mark_delivered(self, item_ids: Sequence[int], batch_id: int) -> int:
        """In-flight items of this batch -> delivered. Returns how many changed state."""
        with self._write() as c:
            return self._mark_delivered(c, item_ids, batch_id)

    def _mark_delivered(self, c: sqlite3.Connection, item_ids: Sequence[int],
                        batch_id: int) -> int:
        now = time.time()
        rows = self._in_flight_rows(c, item_ids, " AND batch_id = ?", (batch_id,))
        for item_id, kind, aid, us, _ in rows:
            c.execute("UPDATE items SET state = 'delivered', next_attempt_at = NULL,"
                      " changed_at = ? WHERE id = ?", (now, item_id))
            if kind == "upsert":
                c.execute("UPDATE annotations SET delivered_at = ?, delivered_us ="
                          " max(coalesce(delivered_us, ?), ?), changed_at = ?"
                          " WHERE annotation_id = ?", (now, us, us, now, aid))
        self._close_batches(c, [batch_id], now)
        self._normalize(c, [r[2] for r in rows], now)
        return len(rows)

    def record_deliveries(self, batch_id: int, import_name: str,
                          deliveries: Sequence[Delivery]) -> int:
        """Items of this batch that ``import_name`` delivered: what each delivered
        (``record_delivered``), its region ids (``record_region_ids``) and the items ->
        delivered, in one transaction: one lock and one fsync for a whole batch, not three per
        annotation (the webhook's commits wait for that lock). Returns how many changed state."""
        with self._write() as c:
            for d in deliveries:
                self._record_delivered(c, d.annotation_id, d.data_row, import_name, d.uuids)
                self._record_region_ids(c, d.annotation_id, d.regions)
            return self._mark_delivered(c, [d.item_id for d in deliveries], batch_id)

    def mark_retry(self, item_ids: Sequence[int], error: str, delay_s: float,
                   now: float | None = None) -> int:
        """In-flight items -> pending again, due at now + delay_s; the error is kept."""
        t = time.time() if now is None else now
        return self._release(item_ids, "pending", t + max(0.0, delay_s), error, t)

    def mark_failed(self, item_ids: Sequence[int], reason: str) -> int:
        """In-flight items -> failed (dead letter, kept with the reason)."""
        return self._release(item_ids, "failed", None, reason, time.time())

    def _release(self, item_ids: Sequence[int], state: str, due_at: float | None, error: str,
                 now: float) -> int:
        """In-flight items -> ``state`` with ``error``; their batches close at ``now``."""
        with self._write() as c:
            rows = self._in_flight_rows(c, item_ids)
            for part in _chunks([r[0] for r in rows]):
                marks = ",".join("?" * len(part))
                c.execute(f"UPDATE items SET state = ?, next_attempt_at = ?,"
                          f" last_error = ?, changed_at = ? WHERE id IN ({marks})",
                          (state, due_at, error, time.time(), *part))
            self._close_batches(c, [r[4] for r in rows], now)
            self._normalize(c, [r[2] for r in rows], now)
        return len(rows)

    def mark_skipped(self, item_ids: Sequence[int], reason: str) -> int:
        """In-flight or pending items -> skipped (nothing to do)."""
        with self._write() as c:
            now = time.time()
            rows: list[tuple] = []
            for part in _chunks(list(item_ids)):
                marks = ",".join("?" * len(part))
                rows += c.execute(f"SELECT id, annotation_id, batch_id FROM items WHERE id IN"
                                  f" ({marks}) AND state IN ('in_flight', 'pending')",
                                  part).fetchall()
            for part in _chunks([r[0] for r in rows]):
                marks = ",".join("?" * len(part))
                c.execute(f"UPDATE items SET state = 'skipped', next_attempt_at = NULL,"
                          f" last_error = ?, changed_at = ? WHERE id IN ({marks})",
                          (reason, now, *part))
            self._close_batches(c, [r[2] for r in rows], now)
            self._normalize(c, [r[1] for r in rows], now)
        return len(rows)

    def requeue(self, item_ids: list[int] | None = None, now: float | None = None) -> int:
        """Failed (dead) items -> pending, attempts reset, due now. Stale ones (a newer version
        exists, or the annotation was deleted and never delivered) become superseded/skipped
        instead. Returns how many items are pending again."""
        with self._write() as c:
            t = time.time() if now is None else now
            if item_ids is None:
                rows = c.execute("SELECT id, annotation_id FROM items WHERE state = 'failed'"
                                 ).fetchall()
            else:
                rows = []
                for part in _chunks(list(item_ids)):
                    marks = ",".join("?" * len(part))
                    rows += c.execute(f"SELECT id, annotation_id FROM items WHERE id IN"
                                      f" ({marks}) AND state = 'failed'", part).fetchall()
            ids = [r[0] for r in rows]
            for part in _chunks(ids):
                marks = ",".join("?" * len(part))
                c.execute(f"UPDATE items SET state = 'pending', attempts = 0,"
                          f" next_attempt_at = ?, changed_at = ? WHERE id IN ({marks})",
                          (t, t, *part))
            # a requeued item of an annotation that already has a pending item: keep one
            self._normalize(c, [r[1] for r in rows], t)
            pending = 0
            for part in _chunks(ids):
                marks = ",".join("?" * len(part))
                pending += c.execute(f"SELECT count(*) FROM items WHERE id IN ({marks})"
                                     f" AND state = 'pending'", part).fetchone()[0]
        return pending

    def recover(self) -> list[Batch]:
        """Call at start, before the worker runs. In-flight items whose batch has an import
        name are returned (the worker looks that import up instead of re-sending them); other
        in-flight items were never sent and go back to pending."""
        with self._write() as c:
            now = time.time()
            rows = c.execute("SELECT i.id, i.annotation_id, i.batch_id FROM items i LEFT JOIN"
                             " batches b ON b.id = i.batch_id WHERE i.state = 'in_flight'"
                             " AND b.import_name IS NULL").fetchall()
            for part in _chunks([r[0] for r in rows]):
                marks = ",".join("?" * len(part))
                c.execute(f"UPDATE items SET state = 'pending', next_attempt_at = ?,"
                          f" last_error = 'recovered: claimed but never sent', changed_at = ?"
                          f" WHERE id IN ({marks})", (now, now, *part))
            self._close_batches(c, [r[2] for r in rows], now)
            self._normalize(c, [r[1] for r in rows], now)
            batches = []
            for bid, name in c.execute(
                    "SELECT DISTINCT b.id, b.import_name FROM batches b JOIN items i"
                    " ON i.batch_id = b.id WHERE i.state = 'in_flight' AND b.import_name IS NOT"
                    " NULL ORDER BY b.id").fetchall():
                batches.append(Batch(bid, self._work_items(
                    c, "i.batch_id = ? AND i.state = 'in_flight'", (bid,)), name))
        return batches

    # -- delivery records -------------------------------------------------------------

    def record_delivered(self, annotation_id: int, data_row: dict, import_name: str,
                         uuids: list[str]) -> None:
        """What the worker delivered for an annotation (for deletes and traceability)."""
        with self._write() as c:
            self._record_delivered(c, annotation_id, data_row, import_name, uuids)

    @staticmethod
    def _record_delivered(c: sqlite3.Connection, annotation_id: int, data_row: dict,
                          import_name: str, uuids: Sequence[str]) -> None:
        now = time.time()
        dr = orjson.dumps(data_row).decode()
        c.execute("INSERT INTO annotations(annotation_id, first_seen_at, changed_at)"
                  " VALUES (?, ?, ?) ON CONFLICT(annotation_id) DO NOTHING",
                  (annotation_id, now, now))
        c.execute("UPDATE annotations SET data_row = ?, delivered_at = ?, changed_at = ?"
                  " WHERE annotation_id = ?", (dr, now, now, annotation_id))
        c.execute("INSERT INTO annotation_imports(annotation_id, import_name, recorded_at,"
                  " uuids) VALUES (?, ?, ?, ?) ON CONFLICT(annotation_id, import_name)"
                  " DO UPDATE SET uuids = excluded.uuids, recorded_at = excluded.recorded_at",
                  (annotation_id, import_name, now, orjson.dumps(list(uuids)).decode()))
        c.executemany("INSERT INTO region_uuid(annotation_id, uuid, data_row, updated_at)"
                      " VALUES (?, ?, ?, ?) ON CONFLICT(annotation_id, uuid) DO UPDATE SET"
                      " data_row = excluded.data_row, updated_at = excluded.updated_at",
                      [(annotation_id, u, dr, now) for u in uuids])

    def record_region_ids(self, annotation_id: int,
                          rows: Sequence[tuple[str, str, str | None]]) -> None:
        """(ls_region_id, uuid, lb_feature_id) of an annotation's regions; a None feature id
        keeps one already known."""
        with self._write() as c:
            self._record_region_ids(c, annotation_id, rows)

    @staticmethod
    def _record_region_ids(c: sqlite3.Connection, annotation_id: int,
                           rows: Sequence[tuple[str, str, str | None]]) -> None:
        now = time.time()
        got = c.execute("SELECT data_row FROM annotations WHERE annotation_id = ?",
                        (annotation_id,)).fetchone()
        dr = got[0] if got else None
        c.executemany(
            "INSERT INTO region_uuid(annotation_id, uuid, ls_region_id, data_row,"
            " lb_feature_id, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(annotation_id, uuid) DO UPDATE SET"
            " ls_region_id = excluded.ls_region_id,"
            " data_row = coalesce(excluded.data_row, data_row),"
            " lb_feature_id = coalesce(excluded.lb_feature_id, lb_feature_id),"
            " updated_at = excluded.updated_at",
            [(annotation_id, uuid, region, dr, feature, now) for region, uuid, feature in rows])

    def set_label_ids(self, annotation_id: int, label_ids: list[str]) -> None:
        with self._write() as c:
            now = time.time()
            c.execute("INSERT INTO annotations(annotation_id, first_seen_at, changed_at)"
                      " VALUES (?, ?, ?) ON CONFLICT(annotation_id) DO NOTHING",
                      (annotation_id, now, now))
            c.execute("UPDATE annotations SET label_ids = ?, changed_at = ?"
                      " WHERE annotation_id = ?",
                      (orjson.dumps(list(label_ids)).decode(), now, annotation_id))

    def delivered_info(self, annotation_id: int) -> dict | None:
        """{"data_row", "imports", "label_ids", "uuids" (of the latest import), "all_uuids",
        "regions", "delivered_at"} or None when nothing of it was ever delivered."""
        with self._read() as c:
            row = c.execute("SELECT data_row, label_ids, delivered_at FROM annotations"
                            " WHERE annotation_id = ?", (annotation_id,)).fetchone()
            imports = c.execute("SELECT import_name, uuids FROM annotation_imports WHERE"
                                " annotation_id = ? ORDER BY recorded_at, rowid",
                                (annotation_id,)).fetchall()
            regions = c.execute("SELECT ls_region_id, uuid, lb_feature_id FROM region_uuid"
                                " WHERE annotation_id = ? ORDER BY rowid",
                                (annotation_id,)).fetchall()
        if row is None or (row[0] is None and row[2] is None and not imports):
            return None
        return {
            "data_row": _loads(row[0]),
            "imports": [name for name, _ in imports],
            "label_ids": _loads(row[1]) or [],
            "uuids": orjson.loads(imports[-1][1]) if imports else [],
            "all_uuids": [r[1] for r in regions],
            "regions": [{"ls_region_id": r[0], "uuid": r[1], "lb_feature_id": r[2]}
                        for r in regions],
            "delivered_at": row[2],
        }

    # -- label configs, cursors, rejected bodies -------------------------------------

    def put_label_config(self, hash: str, xml: str) -> None:
        with self._write() as c:
            c.execute("INSERT INTO label_configs(hash, xml, created_at) VALUES (?, ?, ?)"
                      " ON CONFLICT(hash) DO NOTHING", (hash, xml, time.time()))

    def get_label_config(self, hash: str) -> str | None:
        row = self._reader().execute("SELECT xml FROM label_configs WHERE hash = ?",
                                     (hash,)).fetchone()
        return row[0] if row else None

    def get_cursor(self, name: str) -> str | None:
        row = self._reader().execute("SELECT value FROM cursors WHERE name = ?",
                                     (name,)).fetchone()
        return row[0] if row else None

    def set_cursor(self, name: str, value: str) -> None:
        with self._write() as c:
            c.execute("INSERT INTO cursors(name, value, updated_at) VALUES (?, ?, ?)"
                      " ON CONFLICT(name) DO UPDATE SET value = excluded.value,"
                      " updated_at = excluded.updated_at", (name, value, time.time()))

    def reject(self, body: bytes, reason: str, headers: dict[str, str]) -> int:
        """Keep a rejected webhook body (first 5 MB) for inspection; returns its id."""
        body = bytes(body or b"")
        kept = body[:REJECTED_BODY_CAP]
        with self._write() as c:
            return c.execute(
                "INSERT INTO rejected(received_at, reason, headers, body, body_size, truncated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), reason, orjson.dumps(dict(headers or {})).decode(), kept,
                 len(body), int(len(kept) < len(body)))).lastrowid

    def rejected(self, limit: int = 50) -> list[dict]:
        """Newest first: id, received_at, reason, headers, body, body_size, truncated."""
        rows = self._reader().execute(
            "SELECT id, received_at, reason, headers, body, body_size, truncated FROM rejected"
            " ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], "received_at": r[1], "reason": r[2], "headers": orjson.loads(r[3]),
                 "body": bytes(r[4]), "body_size": r[5], "truncated": bool(r[6])} for r in rows]

    # -- inspection -------------------------------------------------------------------

    def status(self, now: float | None = None) -> dict:
        t = time.time() if now is None else now
        with self._read() as c:
            counts = {s: 0 for s in STATES}
            for state, n in c.execute("SELECT state, count(*) FROM items GROUP BY state"):
                counts[state] = n
            counts["ignored"] = c.execute("SELECT count(*) FROM events WHERE outcome ="
                                          " 'ignored'").fetchone()[0]
            oldest, next_due, due = c.execute(
                "SELECT min(created_at), min(next_attempt_at), sum(next_attempt_at <= ?)"
                " FROM items WHERE state = 'pending'", (t,)).fetchone()
            next_retry = c.execute("SELECT min(next_attempt_at) FROM items WHERE state ="
                                   " 'pending' AND next_attempt_at > ?", (t,)).fetchone()[0]
            in_doubt = c.execute("SELECT count(*) FROM items i JOIN batches b ON b.id ="
                                 " i.batch_id WHERE i.state = 'in_flight' AND b.import_name"
                                 " IS NOT NULL").fetchone()[0]
            rejected = c.execute("SELECT count(*) FROM rejected").fetchone()[0]
            events = c.execute("SELECT count(*) FROM events").fetchone()[0]
            dups = c.execute("SELECT value FROM counters WHERE name = 'duplicates'").fetchone()
        return {
            "counts": counts,
            "due": due or 0,
            "in_doubt": in_doubt,
            "oldest_pending_age_s": None if oldest is None else max(0.0, t - oldest),
            "next_attempt_at": next_due,
            "next_retry_at": next_retry,
            "dead_letters": counts["failed"],
            "rejected": rejected,
            "events_total": events,
            "duplicates_total": dups[0] if dups else 0,
        }

    _ITEM_COLUMNS = ("id", "kind", "annotation_id", "task_id", "project_id", "state", "attempts",
                     "last_error", "updated_at", "created_at", "changed_at", "next_attempt_at",
                     "batch_id", "event_id", "superseded_by", "source")

    def items(self, state: str | None = None, limit: int = 100) -> list[dict]:
        """Work items, newest first. ``state="ignored"`` lists the ignored events of the log
        instead (they have no work item: ``id`` is None, ``last_error`` is the reason)."""
        if state is not None and state not in STATES and state != "ignored":
            raise ValueError(f"unknown state {state!r}; one of {STATES + ('ignored',)}")
        c = self._reader()
        if state == "ignored":
            rows = c.execute(
                "SELECT NULL, kind, annotation_id, task_id, project_id, 'ignored', 0, reason,"
                " updated_at, received_at, received_at, NULL, NULL, id, NULL, source FROM events"
                " WHERE outcome = 'ignored' ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        else:
            where = "WHERE i.state = ?" if state else ""
            args: tuple = (state, limit) if state else (limit,)
            rows = c.execute(
                "SELECT i.id, i.kind, i.annotation_id, i.task_id, i.project_id, i.state,"
                " i.attempts, i.last_error, i.updated_at, i.created_at, i.changed_at,"
                " i.next_attempt_at, i.batch_id, i.event_id, i.superseded_by, e.source"
                f" FROM items i JOIN events e ON e.id = i.event_id {where}"
                " ORDER BY i.id DESC LIMIT ?", args).fetchall()
        return [dict(zip(self._ITEM_COLUMNS, r)) for r in rows]

    # -- reconciliation ---------------------------------------------------------------

    def has_seen(self, annotation_id: int, updated_at: str,
                 incarnation: str | None = None) -> bool:
        """Whether this version of the annotation (of this incarnation, when its creation time
        is given) was already received (any outcome)."""
        c = self._reader()
        rows = c.execute("SELECT key, created_us FROM incarnations WHERE ls_id = ? ORDER BY key",
                         (annotation_id,)).fetchall()
        key = rows[-1][0] if rows else annotation_id
        if incarnation is not None and rows:
            created = parse_timestamp(incarnation)
            match = [k for k, cu in rows if cu in (created, None)]
            if not match:
                return False   # an incarnation never seen: a reused id
            key = match[0]
        return c.execute("SELECT 1 FROM events WHERE dedup_key = ?",
                         (f"u:{key}:{parse_timestamp(updated_at)}",)).fetchone() is not None
    def is_deleted(self, annotation_id: int) -> bool:
        row = self._reader().execute("SELECT deleted_at FROM annotations WHERE annotation_id ="
                                     " ?", (annotation_id,)).fetchone()
        return bool(row and row[0] is not None)

    def known_annotations(self, project_id: int) -> dict[int, str]:
        """annotation_id -> newest updated_at seen, for annotations of the project not deleted."""
        rows = self._reader().execute(
            "SELECT annotation_id, seen_updated_at FROM annotations WHERE project_id = ? AND"
            " deleted_at IS NULL AND seen_updated_at IS NOT NULL", (project_id,)).fetchall()
        return {aid: ts for aid, ts in rows}

    def projects(self) -> list[int]:
        """Projects the annotation index knows (what reconciliation walks by default)."""
        return [r[0] for r in self._reader().execute(
            "SELECT DISTINCT project_id FROM annotations WHERE project_id IS NOT NULL"
            " ORDER BY project_id")]

    def task_annotations(self, task_id: int, project_id: int | None = None) -> list[int]:
        """Label Studio ids of a task's annotations seen and not deleted (to notice deletions
        Label Studio never sent)."""
        sql = "SELECT annotation_id FROM annotations WHERE task_id = ? AND deleted_at IS NULL"
        args: tuple = (task_id,)
        if project_id is not None:
            sql, args = sql + " AND project_id = ?", (task_id, project_id)
        return sorted({ls_annotation_id(r[0]) for r in self._reader().execute(sql, args)})

    def live_annotations(self, project_id: int) -> list[tuple[int, int | None]]:
        """(Label Studio annotation id, task_id) of the project's annotations not deleted."""
        return [(ls_annotation_id(r[0]), r[1]) for r in self._reader().execute(
            "SELECT annotation_id, task_id FROM annotations WHERE project_id = ? AND"
            " deleted_at IS NULL ORDER BY annotation_id", (project_id,))]

    def import_windows(self, annotation_id: int) -> list[tuple[float, float]]:
        """(start, end) wall-clock windows of the imports that delivered this annotation:
        from the moment its batch's import name was stored (just before Labelbox was called)
        to the moment the worker recorded the delivery. Oldest first."""
        rows = self._reader().execute(
            "SELECT coalesce(b.import_set_at, ai.recorded_at), ai.recorded_at"
            " FROM annotation_imports ai LEFT JOIN batches b ON b.import_name = ai.import_name"
            " WHERE ai.annotation_id = ? ORDER BY ai.recorded_at, ai.rowid",
            (annotation_id,)).fetchall()
        return [(min(start, end), end) for start, end in rows]

    def sole_delivered_on_task(self, annotation_id: int) -> bool:
        """True when this annotation reached Labelbox and no other annotation of its task did
        (so every label our imports put on that data row is its own)."""
        row = self._reader().execute(
            "SELECT task_id, delivered_at FROM annotations WHERE annotation_id = ?",
            (annotation_id,)).fetchone()
        if row is None or row[0] is None or row[1] is None:
            return False
        other = self._reader().execute(
            "SELECT 1 FROM annotations WHERE task_id = ? AND annotation_id != ? AND"
            " delivered_at IS NOT NULL LIMIT 1", (row[0], annotation_id)).fetchone()
        return other is None

    def annotation_task(self, annotation_id: int) -> tuple[int | None, int | None] | None:
        row = self._reader().execute("SELECT project_id, task_id FROM annotations WHERE"
                                     " annotation_id = ?", (annotation_id,)).fetchone()
        if row is None or (row[0] is None and row[1] is None):
            return None
        return (row[0], row[1])
