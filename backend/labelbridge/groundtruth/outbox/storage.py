"""The outbox's storage seam: named queries in, rows out.

The queue, the annotation index and the bookkeeping call a few methods with the *name* of a
static query from ``queries.sql`` and keyword parameters; a driver (``sqlite.py`` today, a
PostgreSQL sibling later) owns the connections, runs the text for that name and turns its
library's errors into ``errors.py`` ones. Nothing above the seam builds SQL or imports a
database library. Two drivers: ``sqlite.py`` (one file, the default) and ``postgres.py``
(``LABELBRIDGE_DATABASE_URL``, shared by several replicas), each with its own queries file of
the same names. Conventions every driver keeps:

* a list or tuple parameter is a list of scalars (SQLite receives it as one JSON text for
  ``json_each``; PostgreSQL binds an array);
* parameters are named, except the webhook's hot-path bulk writes (``many`` with tuples in the
  query's column order, a ``NamedTuple`` per table in ``append.py``);
* rows are read by column name (``row["state"]``);
* ``transaction()`` is one short write transaction that holds the write lock from its first
  statement and is durable when the block exits; ``transaction(exclusive=False)`` may run
  beside others of its kind (on PostgreSQL: claims, which lock the rows they choose, and
  updates of one batch by id and owner), never beside an exclusive one; on SQLite every write
  transaction is exclusive. ``snapshot()`` is a consistent read;
* ``one``/``all`` outside a block read on the calling thread's own connection.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Mapping, Protocol, Sequence

from labelbridge.groundtruth.outbox.errors import OutboxClosed, OutboxError, OutboxUnavailable

log = logging.getLogger(__name__)
Row = Mapping[str, Any]
PROBE_AFTER_S = 5.0   # health() tries a write when the last one failed this long ago
_HEADER = re.compile(r"^-- ([a-z_][a-z0-9_]*) --$", re.MULTILINE)


def load_queries(path: Path) -> dict[str, str]:
    """``-- name --`` headed blocks of a ``.sql`` file (comment lines after the header describe
    the query) -> {name: text}."""
    text = path.read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in queries:
            raise ValueError(f"{path.name}: query {name!r} is defined twice")
        sql = "\n".join(line for line in body.splitlines()
                        if not line.lstrip().startswith("--")).strip().rstrip(";")
        if not sql:
            raise ValueError(f"{path.name}: query {name!r} is empty")
        queries[name] = sql
    return queries


class Tx(Protocol):
    """Statements inside one transaction (or snapshot)."""

    def run(self, query: str, **params: Any) -> int:
        """Run a statement; the number of rows it changed."""

    def one(self, query: str, **params: Any) -> Row | None: ...

    def all(self, query: str, **params: Any) -> list[Row]: ...

    def many(self, query: str, rows: Iterable[Mapping[str, Any] | tuple]) -> None:
        """Run a statement once per row of parameters (scalars only)."""


class Storage(Protocol):
    location: str   # the file, or the database URL without its password

    def transaction(self, exclusive: bool = True) -> ContextManager[Tx]: ...

    def snapshot(self) -> ContextManager[Tx]: ...

    def one(self, query: str, **params: Any) -> Row | None: ...

    def all(self, query: str, **params: Any) -> list[Row]: ...

    def background_maintenance(self) -> None:
        """Move housekeeping off the commit path (called once a group-commit writer runs)."""

    def health(self) -> dict: ...

    def close(self) -> None: ...


class Trouble:
    """Since when and why the storage cannot be used: logged when it starts and when it ends;
    ``health`` answers from it, and probes with a write once it is old."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.now: tuple[str, float] | None = None   # (why, since) while unavailable

    def saw(self, exc: OutboxError) -> OutboxError:
        if isinstance(exc, OutboxUnavailable) and not isinstance(exc, OutboxClosed):
            if self.now is None or self.now[0] != str(exc):
                log.error("outbox unavailable: %s", exc)
            self.now = (str(exc), self.now[1] if self.now else time.time())
        return exc

    def cleared(self) -> None:
        if self.now is not None:
            log.warning("outbox %s: writable again after %.0f s (was: %s)", self.location,
                        time.time() - self.now[1], self.now[0])
            self.now = None

    def health(self, probe: Callable[[], None]) -> dict:
        """{"ok", "error"}: the last write worked (or, when it failed a while ago, the
        ``probe`` write works now)."""
        try:
            if self.now is not None and time.time() - self.now[1] >= PROBE_AFTER_S:
                probe()
        except OutboxError as exc:
            return {"ok": False, "error": str(self.saw(exc))}
        return {"ok": self.now is None, "error": None if self.now is None else self.now[0]}


def column(rows: Sequence[Row], name: str) -> list[Any]:
    return [r[name] for r in rows]
