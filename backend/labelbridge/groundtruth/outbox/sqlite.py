"""The SQLite driver of the outbox's storage seam (``storage.py``): the only module that knows
``sqlite3``.

One file in WAL mode. One writer connection per process, guarded by a lock, used by every write
(sync calls and the group-commit thread); readers use per-thread connections. Other processes
(the CLI, the delivery worker) share the file through WAL and the busy timeout. Every write is a
short ``BEGIN IMMEDIATE`` transaction committed with ``synchronous=FULL``.

The file must stay the one this process opened: a commit into a file that was deleted or
replaced meanwhile would be acknowledged and lost at the next start. So every transaction checks
the path's inode before it starts and after it commits, only the first connection may create the
file, and a failure says so (``OutboxUnavailable``). Unavailability (disk full, I/O errors, a
deleted file) is logged when it starts and when it ends.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import quote

import orjson

from labelbridge.groundtruth.outbox.errors import (OutboxBusy, OutboxClosed, OutboxError,
                                                   OutboxUnavailable, StorageError,
                                                   UniqueViolation)
from labelbridge.groundtruth.outbox.storage import Row, Trouble, load_queries

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 2
MIGRATIONS = {2: "migrate_2.sql"}   # version -> script run before schema.sql on older files
# SQLite result codes that mean "the storage cannot be used now", not "the statement is wrong".
_UNAVAILABLE = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN",
                "SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_PROTOCOL")
_UNAVAILABLE_MESSAGES = ("disk is full", "disk I/O error", "readonly database",
                         "unable to open database file", "malformed")


def translate(exc: sqlite3.Error, path: Path) -> OutboxError:
    """A ``sqlite3`` error -> the outbox's own (most specific first)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    message = str(exc)
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in message:
        return OutboxClosed("outbox is closed")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in message:
        return OutboxBusy(f"{path}: {message}")
    if name.startswith(_UNAVAILABLE) or any(m in message for m in _UNAVAILABLE_MESSAGES):
        return OutboxUnavailable(f"{path}: {message}")
    if name == "SQLITE_CONSTRAINT_UNIQUE" or message.startswith("UNIQUE constraint failed"):
        return UniqueViolation(message, message.partition("failed: ")[2])
    return StorageError(f"{path}: {message}")


_SEQUENCES = (list, tuple)


def _params(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """Lists become one JSON text (read in SQL with ``json_each``)."""
    for v in params.values():
        if type(v) in _SEQUENCES:
            return {k: orjson.dumps(list(v)).decode() if type(v) in _SEQUENCES else v
                    for k, v in params.items()}
    return params


def _statements(script: str) -> Iterator[str]:
    """The complete statements of a script (triggers hold ``;`` inside BEGIN ... END)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()


class _Tx:
    """Statements on one connection (inside a transaction or a snapshot)."""
    __slots__ = ("_conn", "_queries")

    def __init__(self, conn: sqlite3.Connection, queries: dict[str, str]) -> None:
        self._conn = conn
        self._queries = queries

    def run(self, query: str, **params: Any) -> int:
        return self._conn.execute(self._queries[query], _params(params)).rowcount

    def one(self, query: str, **params: Any) -> Row | None:
        return self._conn.execute(self._queries[query], _params(params)).fetchone()

    def all(self, query: str, **params: Any) -> list[Row]:
        return self._conn.execute(self._queries[query], _params(params)).fetchall()

    def many(self, query: str, rows: Iterable[Mapping[str, Any] | tuple]) -> None:
        self._conn.executemany(self._queries[query], rows)


class SqliteStorage:
    def __init__(self, path: Path | str, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._queries = load_queries(HERE / "queries.sql")
        self._busy_s = busy_timeout_s
        self._closed = False
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._local = threading.local()
        self._wlock = threading.Lock()
        self._trouble = Trouble(self.location)
        # Once a group-commit writer runs, WAL checkpoints move to a thread of their own (a
        # checkpoint inside a commit is a latency spike for every caller in that group).
        self._checkpointer: threading.Thread | None = None
        self._ckpt_wake = threading.Event()
        self._ckpt_stop = threading.Event()
        try:
            self._wconn = self._connect(create=True)
            self._identity = self._stat()
            self._init_schema()
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        if self._identity is None:
            raise OutboxUnavailable(f"{self.path} vanished while it was being opened")

    # ----- connections ---------------------------------------------------------------------
    def _connect(self, create: bool = False) -> sqlite3.Connection:
        """Only the first connection may create the file: a reader opened after the file was
        deleted must fail, not make an empty one."""
        uri = f"file:{quote(str(self.path))}?mode={'rwc' if create else 'rw'}"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                               timeout=self._busy_s)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_s * 1000)}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise OutboxClosed("outbox is closed")
        self._check_file()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _init_schema(self) -> None:
        c = self._wconn
        if c.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        with self._wlock:
            c.execute("BEGIN IMMEDIATE")
            try:
                version = c.execute("PRAGMA user_version").fetchone()[0]
                if version < SCHEMA_VERSION:
                    scripts = [MIGRATIONS[v] for v in range(version + 1, SCHEMA_VERSION + 1)
                               if version and v in MIGRATIONS] + ["schema.sql"]
                    for script in scripts:
                        for stmt in _statements((HERE / script).read_text(encoding="utf-8")):
                            c.execute(stmt)
                    c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

    # ----- is the file still ours? ---------------------------------------------------------
    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _check_file(self) -> None:
        now = self._stat()
        if now == self._identity:
            return
        what = "deleted" if now is None else "replaced by another file"
        raise OutboxUnavailable(
            f"{self.path} was {what} while this process had it open: nothing more is stored "
            "(webhooks get 503); restart labelbridge to open a new outbox, then run "
            "`labelbridge reconcile` for what Label Studio sent meanwhile")

    def _troubled(self, exc: OutboxError) -> OutboxError:
        return self._trouble.saw(exc)

    def health(self) -> dict:
        """{"ok", "error"}: the file is still ours and the last write worked (or, when it failed
        a while ago, a write works now)."""
        try:
            self._check_file()
        except OutboxError as exc:
            return {"ok": False, "error": str(self._troubled(exc))}
        return self._trouble.health(self._probe)

    def _probe(self) -> None:
        with self.transaction() as tx:
            tx.run("probe")

    # ----- the seam ------------------------------------------------------------------------
    @contextmanager
    def transaction(self, exclusive: bool = True) -> Iterator[_Tx]:
        """One short BEGIN IMMEDIATE transaction on the writer connection (every write
        transaction is exclusive here)."""
        with self._wlock:
            if self._closed:
                raise OutboxClosed("outbox is closed")
            c = self._wconn
            try:
                self._check_file()
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield _Tx(c, self._queries)
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
                self._check_file()    # committed into the file at our path, not a dead inode
            except sqlite3.Error as exc:
                raise self._troubled(translate(exc, self.path)) from exc
            except OutboxUnavailable as exc:
                raise self._troubled(exc)
            self._trouble.cleared()
        if self._checkpointer is not None:
            self._ckpt_wake.set()

    @contextmanager
    def snapshot(self) -> Iterator[_Tx]:
        """A consistent read on this thread's connection."""
        c = self._reader()
        try:
            c.execute("BEGIN")
            try:
                yield _Tx(c, self._queries)
            finally:
                c.execute("COMMIT")
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    def one(self, query: str, **params: Any) -> Row | None:
        try:
            return _Tx(self._reader(), self._queries).one(query, **params)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    def all(self, query: str, **params: Any) -> list[Row]:
        try:
            return _Tx(self._reader(), self._queries).all(query, **params)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    def background_maintenance(self) -> None:
        if self._checkpointer is not None:
            return
        conn = self._connect()
        with self._wlock:
            self._wconn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(conn,),
                                              name="outbox-checkpoint", daemon=True)
        self._checkpointer.start()

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

    def set_trace(self, callback) -> None:
        """Every statement the writer connection runs goes to ``callback`` (tests, debugging)."""
        self._wconn.set_trace_callback(callback)

    def close(self) -> None:
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
