"""Work that must run on one replica at a time: reconciliation, the model-run refresh, index
builds.

``Once.attempt(job)`` tries a PostgreSQL advisory lock named after the job, on a connection of
its own held while the job runs (a replica that dies loses its connection, and so the lock); a
replica that does not get it skips this round (the holder does the work). Every run is recorded
in ``job_runs`` (job, replica, start, end), which is how the fault tests show that no two runs
of a job overlapped. ``Solo`` is the same interface for one process on SQLite: always yours.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import ContextManager, Iterator, Protocol

from labelbridge.postgres.database import Database, lock_key

log = logging.getLogger(__name__)
VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS job_runs (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job TEXT NOT NULL,
  replica TEXT NOT NULL,
  started_at DOUBLE PRECISION NOT NULL,
  finished_at DOUBLE PRECISION,           -- NULL: running, or its replica died meanwhile
  ok BOOLEAN
);
CREATE INDEX IF NOT EXISTS job_runs_job ON job_runs(job, started_at);
"""
KEEP_RUNS_S = 7 * 86400.0


class Jobs(Protocol):
    def attempt(self, job: str, wait: bool = False) -> ContextManager[bool]: ...


class Solo:
    """One process, one store: every attempt is this process's."""

    @contextmanager
    def attempt(self, job: str, wait: bool = False) -> Iterator[bool]:
        yield True


class Once:
    def __init__(self, db: Database, replica: str) -> None:
        self.db, self.replica = db, replica
        db.migrate("jobs", VERSION, lambda conn, found: conn.execute(SCHEMA))

    @contextmanager
    def attempt(self, job: str, wait: bool = False) -> Iterator[bool]:
        """True inside while this replica holds ``job``; False: another one does (with
        ``wait``: wait until it is done, then hold it)."""
        key = lock_key(f"job:{job}")
        with self.db.connection() as conn:
            if wait:
                conn.execute("SELECT pg_advisory_lock(%s)", [key])
            elif not conn.execute("SELECT pg_try_advisory_lock(%s) AS ok",
                                  [key]).fetchone()["ok"]:
                yield False
                return
            ok, run = False, None
            try:
                now = time.time()
                conn.execute("DELETE FROM job_runs WHERE job = %s AND started_at < %s",
                             [job, now - KEEP_RUNS_S])
                run = conn.execute("INSERT INTO job_runs(job, replica, started_at) VALUES "
                                   "(%s, %s, %s) RETURNING id", [job, self.replica, now]
                                   ).fetchone()["id"]
                yield True
                ok = True
            finally:
                try:
                    if run is not None:
                        conn.execute("UPDATE job_runs SET finished_at = %s, ok = %s "
                                     "WHERE id = %s", [time.time(), ok, run])
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", [key])

    def runs(self, job: str) -> list[dict]:
        """The recorded runs of ``job``, oldest first."""
        with self.db.connection() as conn:
            return conn.execute("SELECT replica, started_at, finished_at, ok FROM job_runs "
                                "WHERE job = %s ORDER BY started_at, id", [job]).fetchall()
