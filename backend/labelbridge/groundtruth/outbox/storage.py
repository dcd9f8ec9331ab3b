"""The outbox's storage seam: named queries in, rows out.

The queue, the annotation index and the bookkeeping call a few methods with the *name* of a
static query from ``queries.sql`` and keyword parameters; a driver (``sqlite.py`` today, a
PostgreSQL sibling later) owns the connections, runs the text for that name and turns its
library's errors into ``errors.py`` ones. Nothing above the seam builds SQL or imports a
database library. Conventions every driver keeps:

* a list or tuple parameter is a list of scalars (SQLite receives it as one JSON text for
  ``json_each``; PostgreSQL would bind an array);
* parameters are named, except the webhook's hot-path bulk writes (``many`` with tuples in the
  query's column order, a ``NamedTuple`` per table in ``append.py``);
* rows are read by column name (``row["state"]``);
* ``transaction()`` is one short write transaction that holds the write lock from its first
  statement and is durable when the block exits; ``snapshot()`` is a consistent read;
* ``one``/``all`` outside a block read on the calling thread's own connection.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ContextManager, Iterable, Mapping, Protocol, Sequence

Row = Mapping[str, Any]
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
    path: Path

    def transaction(self) -> ContextManager[Tx]: ...

    def snapshot(self) -> ContextManager[Tx]: ...

    def one(self, query: str, **params: Any) -> Row | None: ...

    def all(self, query: str, **params: Any) -> list[Row]: ...

    def background_maintenance(self) -> None:
        """Move housekeeping off the commit path (called once a group-commit writer runs)."""

    def close(self) -> None: ...


def column(rows: Sequence[Row], name: str) -> list[Any]:
    return [r[name] for r in rows]
