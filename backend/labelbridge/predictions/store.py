"""Prediction index (SQLite): data row keys -> the row's chosen label, and prepared predictions.

Three tables do the work:
* ``rows``: one per data row, findable by data row id, global key, external id or row_data
  URL; ``payloads``: its opaque compact payload (what conversion needs, nothing more), apart
  so that building the key indexes does not read every payload;
* ``prepared``: the Label Studio prediction of a row for one conversion context (label config,
  mapping, model version), stored as ready-to-send JSON bytes so ``/predict`` is a lookup;
  ``losses``: what that conversion could not carry over, per row (JSON lines of ``Loss``), for
  ``labelbridge losses``.

The index is built by streaming the export into a temporary file that replaces the old one
atomically, so memory stays bounded whatever the export size and readers never see half a build.
Payloads read by worker processes stay in the "part" files those workers wrote beside the index
(named in its meta, attached on open): copying them in would cost the single writer as much as
the workers' whole parse.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import orjson

from labelbridge.predictions.parts import (INSERT_PAYLOAD, PAYLOADS, listed_parts, meta_parts,
                                           open_for_build, stale_parts)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
  pk INTEGER PRIMARY KEY,
  data_row_id TEXT, global_key TEXT, external_id TEXT, row_data TEXT, origin TEXT
);
%s;
CREATE TABLE IF NOT EXISTS prepared (
  context TEXT NOT NULL, pk INTEGER NOT NULL, prediction BLOB NOT NULL,
  PRIMARY KEY (context, pk)
);
CREATE TABLE IF NOT EXISTS contexts (
  context TEXT PRIMARY KEY, label_config TEXT NOT NULL, complete INTEGER NOT NULL DEFAULT 0,
  report TEXT, updated_at REAL
);
CREATE TABLE IF NOT EXISTS losses (
  context TEXT NOT NULL, pk INTEGER NOT NULL, losses BLOB NOT NULL,
  PRIMARY KEY (context, pk)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS feature_names (name TEXT PRIMARY KEY) WITHOUT ROWID;
""" % PAYLOADS
INDEXES = """
CREATE INDEX IF NOT EXISTS rows_data_row_id ON rows(data_row_id);
CREATE INDEX IF NOT EXISTS rows_global_key ON rows(global_key);
CREATE INDEX IF NOT EXISTS rows_external_id ON rows(external_id);
CREATE INDEX IF NOT EXISTS rows_row_data ON rows(row_data);
"""
FORMAT = "4"  # of the files build_index writes: part of the export fingerprint, so an index
# written by an older version is rebuilt instead of misread
KEY_COLUMNS = {"data_row_id": "data_row_id", "global_key": "global_key",
               "external_id": "external_id", "url": "row_data"}
BATCH = 1000  # rows per insert
_SQL_VARS = 900
MMAP_SIZE = 1 << 40  # capped by SQLite's compile-time maximum
INSERT_ROW = ("INSERT INTO rows(pk, data_row_id, global_key, external_id, row_data, origin) "
              "VALUES (?,?,?,?,?,?)")


class IndexRow(NamedTuple):  # the columns of rows, then the payload (absent: in a part)
    pk: int  # orders the rows: the first of several with one key is the one found
    data_row_id: str | None
    global_key: str | None
    external_id: str | None
    row_data: str | None
    origin: str | None
    payload: bytes


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None,
                           timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(f"PRAGMA mmap_size={MMAP_SIZE}")  # reads without a syscall per page
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _chunks(seq: Sequence, n: int = _SQL_VARS) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class IndexTail(NamedTuple):
    """What is only known once every row was read."""
    meta: dict[str, str]
    feature_names: Iterable[str]
    parts: Sequence[Path] = ()  # payload files written beside the index (``PayloadPart``)


def build_index(path: Path, rows: Iterable[IndexRow], finish: Callable[[], IndexTail],
                progress: Callable[[int], None] | None = None) -> int:
    """Write a fresh index from ``rows`` (streamed) and atomically replace ``path``.

    ``finish`` is called once every row was written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".build-{os.getpid()}")
    conn = open_for_build(tmp)
    try:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        count = _insert_rows(conn, rows, progress)
        tail = finish()
        conn.executemany("INSERT OR IGNORE INTO feature_names(name) VALUES (?)",
                         [(n,) for n in tail.feature_names])
        meta = {**tail.meta, "rows": str(count), "built_at": str(time.time()),
                "parts": orjson.dumps([p.name for p in tail.parts]).decode()}
        conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
        conn.executescript(INDEXES)
        conn.execute("PRAGMA journal_mode=WAL")
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise
    conn.close()
    replaced = listed_parts(path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, path)
    for stale in stale_parts(path, [p.name for p in tail.parts], replaced):
        stale.unlink(missing_ok=True)
    return count


def _insert_rows(conn: sqlite3.Connection, rows: Iterable[IndexRow],
                 progress: Callable[[int], None] | None) -> int:
    """Insert ``rows`` in batches (in this thread: a writer thread would fight the producer
    for the GIL on every row, which measured slower)."""
    count = 0
    batch: list[IndexRow] = []

    def flush() -> None:
        nonlocal count
        conn.executemany(INSERT_ROW, [r[:6] for r in batch])
        conn.executemany(INSERT_PAYLOAD, [(r[0], r[6]) for r in batch if len(r) > 6])
        count += len(batch)
        batch.clear()
        if progress:
            progress(count)

    for r in rows:
        batch.append(r)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return count


class PredictionStore:
    """Reads the index; writes prepared predictions. Thread-safe; reopens after a rebuild,
    unless ``follow`` is False: then it keeps reading the file it opened first (the server
    swaps in a new store itself, with the model version that goes with it)."""

    def __init__(self, path: Path, follow: bool = True) -> None:
        self.path = Path(path)
        self.follow = follow
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._inode: int | None = None
        self._checked = 0.0
        self._parts: list[str] = ["main"]  # schemas holding payloads

    def _attach_parts(self, conn: sqlite3.Connection) -> list[str]:
        schemas = ["main"]
        for n, name in enumerate(meta_parts(conn)):
            part = self.path.with_name(name)
            if not part.exists():
                raise IndexMissing(f"prediction index {self.path}: its payload file {part} is "
                                   "missing; run `labelbridge index --export PATH` again")
            conn.execute(f"ATTACH ? AS part{n}", (f"file:{part}?mode=ro",))
            conn.execute(f"PRAGMA part{n}.mmap_size={MMAP_SIZE}")
            schemas.append(f"part{n}")
        return schemas

    # -- connection management
    def _db(self) -> sqlite3.Connection:
        now = time.monotonic()
        if self._conn is not None and (not self.follow or now - self._checked < 1.0):
            return self._conn
        with self._lock:
            self._checked = now
            try:
                inode = self.path.stat().st_ino
            except FileNotFoundError:
                raise IndexMissing(f"no prediction index at {self.path}; run "
                                   "`labelbridge index --export PATH`") from None
            if self._conn is None or inode != self._inode:
                if self._conn is not None:
                    self._conn.close()
                self._conn = _connect(self.path)
                self._conn.executescript(SCHEMA)
                self._parts = self._attach_parts(self._conn)
                self._inode = inode
            return self._conn

    def exists(self) -> bool:
        return self.path.exists()

    @property
    def locator(self) -> str:
        """How a prepare worker opens this index (``prepare_worker``)."""
        return str(self.path)

    @property
    def inode(self) -> int | None:
        """Of the file this store reads (None before the first read)."""
        return self._inode

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- metadata
    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db().execute("SELECT key, value FROM meta").fetchall())

    def feature_names(self) -> set[str]:
        with self._lock:
            return {n for (n,) in self._db().execute("SELECT name FROM feature_names")}

    def count(self) -> int:
        with self._lock:
            return self._db().execute("SELECT count(*) FROM rows").fetchone()[0]

    # -- lookups
    def find(self, key: str, values: Sequence[str]) -> dict[str, int]:
        """value -> row pk for one key kind (data_row_id, global_key, external_id, url)."""
        column = KEY_COLUMNS[key]
        found: dict[str, int] = {}
        with self._lock:
            db = self._db()
            for chunk in _chunks(list(dict.fromkeys(values))):
                marks = ",".join("?" * len(chunk))
                for value, pk in db.execute(
                        f"SELECT {column}, pk FROM rows WHERE {column} IN ({marks})", chunk):
                    found.setdefault(value, pk)
        return found

    def data_row(self, key: str, value: str) -> tuple[str | None, str | None] | None:
        """(data row id, global key) of the row whose ``key`` equals ``value``."""
        column = KEY_COLUMNS[key]
        with self._lock:
            return self._db().execute(f"SELECT data_row_id, global_key FROM rows WHERE "
                                      f"{column} = ? LIMIT 1", (value,)).fetchone()

    def rows(self, pks: Sequence[int]) -> dict[int, tuple[str | None, bytes]]:
        """pk -> (origin, payload)."""
        out: dict[int, tuple[str | None, bytes]] = {}
        with self._lock:
            db = self._db()
            for chunk in _chunks(list(pks)):
                marks = ",".join("?" * len(chunk))
                origins = dict(db.execute(f"SELECT pk, origin FROM rows WHERE pk IN ({marks})",
                                          chunk).fetchall())
                for schema in self._parts:
                    for pk, payload in db.execute(f"SELECT pk, payload FROM {schema}.payloads "
                                                  f"WHERE pk IN ({marks})", chunk):
                        out[pk] = (origins[pk], payload)
        return out

    def iter_pks(self, batch: int = 1000) -> Iterator[list[int]]:
        """Every row pk in order, in batches. Row keys start at 0 (the first line of the first
        file), so the scan starts below it."""
        last = -1
        while True:
            with self._lock:
                pks = [pk for (pk,) in self._db().execute(
                    "SELECT pk FROM rows WHERE pk > ? ORDER BY pk LIMIT ?", (last, batch))]
            if not pks:
                return
            yield pks
            last = pks[-1]

    def iter_rows(self, batch: int = 1000) -> Iterator[tuple]:
        """Every row in pk order: ``IndexRow`` fields as a tuple (``pg_store`` copies them)."""
        for pks in self.iter_pks(batch):
            with self._lock:
                keys = self._db().execute(
                    "SELECT pk, data_row_id, global_key, external_id, row_data FROM rows WHERE "
                    "pk BETWEEN ? AND ? ORDER BY pk", (pks[0], pks[-1])).fetchall()
            found = self.rows(pks)
            yield from ((*k, *found[k[0]]) for k in keys)

    # -- prepared predictions
    def prepared(self, context: str, pks: Sequence[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        with self._lock:
            db = self._db()
            for chunk in _chunks(list(pks)):
                marks = ",".join("?" * len(chunk))
                out.update(db.execute(f"SELECT pk, prediction FROM prepared WHERE context = ? "
                                      f"AND pk IN ({marks})", (context, *chunk)).fetchall())
        return out

    def put_prepared(self, context: str, items: Iterable[tuple[int, bytes]],
                     losses: Iterable[tuple[int, bytes]] = ()) -> None:
        """Store predictions, and the losses (JSON lines) of the rows that have some."""
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO prepared(context, pk, prediction) "
                               "VALUES (?, ?, ?)", [(context, pk, b) for pk, b in items])
                db.executemany("INSERT OR REPLACE INTO losses(context, pk, losses) "
                               "VALUES (?, ?, ?)", [(context, pk, b) for pk, b in losses])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def iter_losses(self, context: str) -> Iterator[bytes]:
        """The losses of one context: JSON lines, in row order."""
        last = -1
        while True:
            with self._lock:
                chunk = self._db().execute(
                    "SELECT pk, losses FROM losses WHERE context = ? AND pk > ? ORDER BY pk "
                    "LIMIT 1000", (context, last)).fetchall()
            if not chunk:
                return
            for _, blob in chunk:
                yield blob
            last = chunk[-1][0]

    def register_context(self, context: str, label_config: str) -> None:
        """A context in use now (``updated_at``: when last used or prepared)."""
        with self._lock:
            self._db().execute("INSERT INTO contexts(context, label_config, updated_at) VALUES "
                               "(?, ?, ?) ON CONFLICT(context) DO UPDATE SET updated_at = "
                               "excluded.updated_at", (context, label_config, time.time()))

    def drop_contexts(self, keep: int, spare: Iterable[str] = ()) -> list[str]:
        """All but the ``keep`` most recently used contexts (and those in ``spare``) go, with
        their predictions and losses. Returns the keys dropped."""
        with self._lock:
            db, spared = self._db(), set(spare)
            old = [c for (c,) in db.execute("SELECT context FROM contexts ORDER BY updated_at "
                                            "DESC, context LIMIT -1 OFFSET ?", (keep,))
                   if c not in spared]
            db.execute("BEGIN IMMEDIATE")
            try:
                for table in ("prepared", "losses", "contexts"):
                    db.executemany(f"DELETE FROM {table} WHERE context = ?", [(c,) for c in old])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return old

    def finish_context(self, context: str, report: dict) -> None:
        with self._lock:
            self._db().execute("UPDATE contexts SET complete = 1, report = ?, updated_at = ? "
                               "WHERE context = ?",
                               (orjson.dumps(report).decode(), time.time(), context))

    def context_complete(self, context: str) -> bool:
        with self._lock:
            row = self._db().execute("SELECT complete FROM contexts WHERE context = ?",
                                     (context,)).fetchone()
        return bool(row and row[0])

    def contexts(self) -> list[dict]:
        with self._lock:
            rows = self._db().execute("SELECT context, complete, report, updated_at FROM "
                                      "contexts ORDER BY updated_at").fetchall()
        return [{"context": c, "complete": bool(done), "report": orjson.loads(r) if r else None,
                 "updated_at": t} for c, done, r, t in rows]


class IndexMissing(RuntimeError):
    """No prediction index has been built yet."""
