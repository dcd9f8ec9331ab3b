"""``Outbox``: the durable delivery queue, one object over its parts.

Label Studio sends each webhook once, with a 1 s timeout and no retry, so whatever the HTTP
server hands us must be on disk before it answers. The parts: append decisions
(``append.py``), the queue (``queue.py``), the annotation index (``index.py``), bookkeeping
(``bookkeeping.py``), the group-commit writer (``writer.py``); storage behind one seam
(``storage.py``, driven by ``sqlite.py``, or by ``postgres.py`` for a database URL).
"""

from __future__ import annotations

from pathlib import Path

from labelbridge.groundtruth.outbox.append import Appending, append_results
from labelbridge.groundtruth.outbox.bookkeeping import Bookkeeping
from labelbridge.groundtruth.outbox.index import AnnotationIndex
from labelbridge.groundtruth.outbox.queue import Queue
from labelbridge.groundtruth.outbox.sqlite import SqliteStorage
from labelbridge.groundtruth.outbox.storage import Storage
from labelbridge.groundtruth.outbox.writer import GroupWriter
from labelbridge.postgres import is_database_url


class Outbox(Appending, Queue, AnnotationIndex, Bookkeeping):
    """The durable delivery queue. Thread-safe; one instance per process."""

    def __init__(self, location: Path | str, *, busy_timeout_s: float = 10.0,
                 max_group_events: int = 5000) -> None:
        """``location``: a SQLite file, or a ``postgresql://`` URL (shared by replicas)."""
        self._db: Storage
        if is_database_url(location):
            from labelbridge.groundtruth.outbox.postgres import PostgresStorage
            self._db = PostgresStorage(str(location), busy_timeout_s)
            self.path: Path | None = None
        else:
            self._db = SqliteStorage(location, busy_timeout_s)
            self.path = self._db.path
        self.url = str(location) if self.path is None else None
        self.location = self._db.location   # for messages (no password)
        self._writer = GroupWriter(self._db, append_results, max_group_events)

    @property
    def storage(self) -> Storage:
        return self._db

    def health(self) -> dict:
        """{"ok": bool, "error": str | None}: can this process store events now?"""
        return self._db.health()

    def close(self) -> None:
        """Finish queued async appends, stop the writer thread, close every connection."""
        self._writer.close()
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
