"""A pool of connections to one PostgreSQL database, and its versioned schemas.

Connections are in autocommit mode and return rows as dicts; a transaction is an explicit
``conn.transaction()`` block. Each component (the outbox, the prediction index, the job record)
keeps its schema version in ``labelbridge_schema`` and is migrated by the bridge itself at open,
under an advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

import hashlib
import logging
import re
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)
SCHEMES = ("postgresql://", "postgres://")
VERSIONS = """CREATE TABLE IF NOT EXISTS labelbridge_schema (
  component TEXT PRIMARY KEY, version INTEGER NOT NULL, migrated_at DOUBLE PRECISION NOT NULL)"""


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer labelbridge."""


def is_database_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL without its password (for logs and messages)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def lock_key(name: str) -> int:
    """A stable 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha1(f"labelbridge:{name}".encode()).digest()[:8], "big",
                          signed=True)


class Database:
    def __init__(self, url: str, *, max_size: int = 8, timeout_s: float = 10.0,
                 name: str = "labelbridge", lock_timeout_s: float | None = None) -> None:
        """Opens the pool and waits (up to ``timeout_s``) for a first connection: an
        unreachable server fails here (``psycopg_pool.PoolTimeout``). ``lock_timeout_s``: how
        long a statement waits for a lock before it fails (``LockNotAvailable``)."""
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.url = url
        self.timeout_s = timeout_s
        options = {"options": f"-c lock_timeout={int(lock_timeout_s * 1000)}"} \
            if lock_timeout_s else {}
        self.pool = ConnectionPool(url, min_size=1, max_size=max_size, timeout=timeout_s,
                                   open=False, name=name, reconnect_timeout=timeout_s * 6,
                                   kwargs={"autocommit": True, "row_factory": dict_row,
                                           "application_name": name,
                                           "connect_timeout": max(1, int(timeout_s)),
                                           **options})
        try:
            self.pool.open(wait=True, timeout=timeout_s)
        except BaseException:
            self.pool.close()
            raise

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self.pool.connection() as conn:
            yield conn

    def migrate(self, component: str, version: int,
                steps: Callable[[psycopg.Connection, int], None]) -> int:
        """Bring ``component``'s tables to ``version``: ``steps(conn, found)`` runs in one
        transaction (``found`` is 0 for a new database) unless they are there already.
        Returns the version found."""
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key("migrate")])
            conn.execute(VERSIONS)
            row = conn.execute("SELECT version FROM labelbridge_schema WHERE component = %s",
                               [component]).fetchone()
            found = row["version"] if row else 0
            if found > version:
                raise SchemaTooNew(f"{redact(self.url)}: the {component} tables are version "
                                   f"{found}, newer than this labelbridge knows ({version}): "
                                   "upgrade labelbridge")
            if found < version:
                steps(conn, found)
                conn.execute("INSERT INTO labelbridge_schema(component, version, migrated_at) "
                             "VALUES (%s, %s, extract(epoch FROM now())) ON CONFLICT (component)"
                             " DO UPDATE SET version = excluded.version, "
                             "migrated_at = excluded.migrated_at", [component, version])
                log.info("database %s: %s tables %s version %d", redact(self.url), component,
                         "created at" if found == 0 else f"migrated from {found} to", version)
        return found

    def close(self) -> None:
        self.pool.close()
