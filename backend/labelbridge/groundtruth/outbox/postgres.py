"""The PostgreSQL driver of the outbox's storage seam (``storage.py``): the only outbox module
that knows psycopg. Several replicas share one database (``LABELBRIDGE_DATABASE_URL``).

Tables and queries are ``pg_schema.sql`` and ``pg_queries.sql`` (the names of
``queries.sql``); the bridge creates and migrates them itself (``labelbridge.postgres``,
component "outbox").

Locking keeps the seam's contract across replicas. An exclusive ``transaction()`` (appends,
outcomes, normalisation, take-overs) first takes one transaction-level advisory lock in
exclusive mode: these read and decide over several rows (a delete against the item in flight
of its annotation), which is exactly what SQLite's write lock makes safe, and they are short (a
few ms) while imports take seconds, so serialising them costs no delivery throughput. A claim
(``exclusive=False``) takes the same lock in shared mode, so claims of several replicas run at
once, each locking the items it chooses ``FOR UPDATE SKIP LOCKED``: two replicas never claim the
same item, and neither waits for the other. Lease renewals and the other one-batch updates
(by id and owner) are single statements that PostgreSQL's row locks order by themselves.

Errors: a lost or refused connection, a full disk, a read-only server -> ``OutboxUnavailable``;
the lock not had within the busy timeout, a deadlock -> ``OutboxBusy``; a unique constraint ->
``UniqueViolation``; anything else -> ``StorageError``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import psycopg
from psycopg import errors as pg
from psycopg_pool import PoolTimeout

from labelbridge.groundtruth.outbox.errors import (OutboxBusy, OutboxClosed, OutboxError,
                                                   OutboxUnavailable, StorageError,
                                                   UniqueViolation)
from labelbridge.groundtruth.outbox.storage import Row, Trouble, load_queries
from labelbridge.postgres import Database, redact
from labelbridge.postgres.database import lock_key

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 1
MIGRATIONS: dict[int, str] = {}   # version -> script run before pg_schema.sql on older tables
WRITE_LOCK = lock_key("outbox:write")
_EXCLUSIVE = "SELECT pg_advisory_xact_lock(%s)"
_SHARED = "SELECT pg_advisory_xact_lock_shared(%s)"
# SQLSTATE classes: 08 connection, 53 insufficient resources (disk full), 57 operator
# intervention (shutdown), 58 system error (I/O); 25006 read-only transaction.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
_BUSY = (pg.LockNotAvailable, pg.DeadlockDetected, pg.SerializationFailure)


def translate(exc: Exception, where: str) -> OutboxError:
    """A psycopg (or pool) error -> the outbox's own (most specific first)."""
    if isinstance(exc, PoolTimeout):
        return OutboxUnavailable(f"{where}: no database connection: {exc}")
    if isinstance(exc, pg.UniqueViolation):
        constraint = exc.diag.constraint_name or ""
        return UniqueViolation(f"{where}: {exc}", constraint)
    if isinstance(exc, _BUSY) or isinstance(exc, pg.QueryCanceled):
        return OutboxBusy(f"{where}: {exc}")
    state = getattr(exc, "sqlstate", None) or ""
    if (isinstance(exc, psycopg.OperationalError) and not state) or \
            state.startswith(_UNAVAILABLE_CLASSES) or state == "25006":
        return OutboxUnavailable(f"{where}: {exc}")
    if isinstance(exc, psycopg.InterfaceError):
        return OutboxUnavailable(f"{where}: {exc}")
    return StorageError(f"{where}: {exc}")


def _schema(conn: psycopg.Connection, found: int) -> None:
    scripts = [MIGRATIONS[v] for v in range(found + 1, SCHEMA_VERSION + 1)
               if found and v in MIGRATIONS] + ["pg_schema.sql"]
    for script in scripts:
        conn.execute((HERE / script).read_text(encoding="utf-8"))


class _Tx:
    """Statements on one connection (inside a transaction or a snapshot)."""
    __slots__ = ("_conn", "_queries")

    def __init__(self, conn: psycopg.Connection, queries: dict[str, str]) -> None:
        self._conn = conn
        self._queries = queries

    def run(self, query: str, **params: Any) -> int:
        return self._conn.execute(self._queries[query], params or None).rowcount

    def one(self, query: str, **params: Any) -> Row | None:
        return self._conn.execute(self._queries[query], params or None).fetchone()

    def all(self, query: str, **params: Any) -> list[Row]:
        return self._conn.execute(self._queries[query], params or None).fetchall()

    def many(self, query: str, rows: Iterable[Mapping[str, Any] | tuple]) -> None:
        rows = list(rows)
        if rows:
            with self._conn.cursor() as cur:
                cur.executemany(self._queries[query], rows)


class PostgresStorage:
    def __init__(self, url: str, busy_timeout_s: float = 10.0, pool_size: int = 6) -> None:
        self.location = redact(url)
        self._queries = load_queries(HERE / "pg_queries.sql")
        self._closed = False
        self._trouble = Trouble(self.location)
        try:
            self._db = Database(url, max_size=pool_size, timeout_s=busy_timeout_s,
                                name="labelbridge-outbox", lock_timeout_s=busy_timeout_s)
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc, self.location) from exc
        try:
            self._db.migrate("outbox", SCHEMA_VERSION, _schema)
        except psycopg.Error as exc:
            self._db.close()
            raise translate(exc, self.location) from exc

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        if self._closed:
            raise OutboxClosed("outbox is closed")
        with self._db.connection() as conn:
            yield conn

    @contextmanager
    def transaction(self, exclusive: bool = True) -> Iterator[_Tx]:
        """One short transaction, under the write lock (shared when not ``exclusive``)."""
        try:
            with self._connection() as conn, conn.transaction():
                conn.execute(_EXCLUSIVE if exclusive else _SHARED, [WRITE_LOCK])
                yield _Tx(conn, self._queries)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._trouble.saw(translate(exc, self.location)) from exc
        except OutboxUnavailable as exc:
            raise self._trouble.saw(exc)
        self._trouble.cleared()

    @contextmanager
    def snapshot(self) -> Iterator[_Tx]:
        """A consistent read (one REPEATABLE READ, READ ONLY transaction)."""
        try:
            with self._connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield _Tx(conn, self._queries)
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc, self.location) from exc

    def one(self, query: str, **params: Any) -> Row | None:
        try:
            with self._connection() as conn:
                return _Tx(conn, self._queries).one(query, **params)
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc, self.location) from exc

    def all(self, query: str, **params: Any) -> list[Row]:
        try:
            with self._connection() as conn:
                return _Tx(conn, self._queries).all(query, **params)
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc, self.location) from exc

    def health(self) -> dict:
        """{"ok", "error"}: the last write worked (or, when it failed a while ago, a write
        works now)."""
        return self._trouble.health(self._probe)

    def _probe(self) -> None:
        with self.transaction() as tx:
            tx.run("probe")

    def background_maintenance(self) -> None:
        """Nothing to move: the server checkpoints by itself."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
