"""The prediction index in PostgreSQL (``LABELBRIDGE_DATABASE_URL``): what ``store.py`` keeps in
a SQLite file, shared by every replica, one *generation* per build.

A build is made as today into a local SQLite file (the parallel readers, bounded memory) and
then copied into a new generation in one transaction that also makes it the current one
(``PgIndex.publish``): a replica sees the new index only once it is complete, and one that
still serves the previous generation reads it unchanged until it swaps (the previous one is
kept; older ones are removed). Prepared predictions are shared: a context prepared by one
replica is a lookup on all of them.

``/predict`` reads per request two indexed lookups, as on SQLite: the task's keys in
``ix_rows`` (an index per key column, with the generation) and the prepared predictions by
primary key. What a generation's store reads once (meta, feature names) it keeps, since a
generation never changes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import orjson

from labelbridge.postgres import Database
from labelbridge.predictions.store import KEY_COLUMNS, IndexMissing, PredictionStore

VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS ix_generations (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  fingerprint TEXT, built_by TEXT, created_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS ix_current (
  one INTEGER PRIMARY KEY DEFAULT 1 CHECK (one = 1), generation BIGINT NOT NULL,
  previous BIGINT, since DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS ix_rows (
  gen BIGINT NOT NULL, pk BIGINT NOT NULL, data_row_id TEXT, global_key TEXT,
  external_id TEXT, row_data TEXT, origin TEXT, payload BYTEA NOT NULL,
  PRIMARY KEY (gen, pk));
CREATE INDEX IF NOT EXISTS ix_rows_data_row_id ON ix_rows(data_row_id, gen);
CREATE INDEX IF NOT EXISTS ix_rows_global_key ON ix_rows(global_key, gen);
-- hash: external ids and URLs may be longer than a b-tree entry may be
CREATE INDEX IF NOT EXISTS ix_rows_external_id ON ix_rows USING hash (external_id);
CREATE INDEX IF NOT EXISTS ix_rows_row_data ON ix_rows USING hash (row_data);
CREATE TABLE IF NOT EXISTS ix_meta (gen BIGINT NOT NULL, key TEXT NOT NULL, value TEXT,
  PRIMARY KEY (gen, key));
CREATE TABLE IF NOT EXISTS ix_feature_names (gen BIGINT NOT NULL, name TEXT NOT NULL,
  PRIMARY KEY (gen, name));
CREATE TABLE IF NOT EXISTS ix_contexts (gen BIGINT NOT NULL, context TEXT NOT NULL,
  label_config TEXT NOT NULL, complete BOOLEAN NOT NULL DEFAULT false, report TEXT,
  updated_at DOUBLE PRECISION, PRIMARY KEY (gen, context));
CREATE TABLE IF NOT EXISTS ix_prepared (gen BIGINT NOT NULL, context TEXT NOT NULL,
  pk BIGINT NOT NULL, prediction BYTEA NOT NULL, PRIMARY KEY (gen, context, pk));
CREATE TABLE IF NOT EXISTS ix_losses (gen BIGINT NOT NULL, context TEXT NOT NULL,
  pk BIGINT NOT NULL, losses BYTEA NOT NULL, PRIMARY KEY (gen, context, pk));
"""
TABLES = ("ix_rows", "ix_meta", "ix_feature_names", "ix_contexts", "ix_prepared", "ix_losses")
FOLLOW_S = 1.0   # a following store looks for a newer generation at most this often


class PgIndex:
    """The shared index: its generations, the current one, publishing a new one."""

    def __init__(self, db: Database, work_dir: Path) -> None:
        """``work_dir``: where this replica builds the SQLite file it publishes."""
        self.db, self.work_dir = db, Path(work_dir)
        db.migrate("predictions", VERSION, lambda conn, found: conn.execute(SCHEMA))

    @property
    def locator(self) -> str:
        return self.db.url

    def current(self) -> int | None:
        with self.db.connection() as conn:
            row = conn.execute("SELECT generation FROM ix_current").fetchone()
        return row["generation"] if row else None

    def fingerprint(self) -> str | None:
        """Of the current generation (None: no index yet)."""
        with self.db.connection() as conn:
            row = conn.execute("SELECT m.value FROM ix_current c JOIN ix_meta m ON m.gen = "
                               "c.generation AND m.key = 'fingerprint'").fetchone()
        return row["value"] if row else None

    def open(self, generation: int | None = None) -> PgPredictionStore:
        """A store of ``generation`` (pinned), or following the current one (None)."""
        return PgPredictionStore(self, generation)

    def publish(self, built: Path, built_by: str) -> int:
        """Copy the SQLite index at ``built`` into a new generation and make it current, in one
        transaction; then remove generations older than the previous one. Returns it."""
        source = PredictionStore(built, follow=False)
        try:
            meta = source.meta()
            with self.db.connection() as conn, conn.transaction():
                gen = conn.execute("INSERT INTO ix_generations(fingerprint, built_by, created_at)"
                                   " VALUES (%s, %s, %s) RETURNING id",
                                   [meta.get("fingerprint"), built_by, time.time()]
                                   ).fetchone()["id"]
                with conn.cursor() as cur, cur.copy(
                        "COPY ix_rows (gen, pk, data_row_id, global_key, external_id, row_data,"
                        " origin, payload) FROM STDIN") as copy:
                    for row in source.iter_rows():
                        copy.write_row((gen, *row))
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO ix_meta(gen, key, value) VALUES (%s, %s, %s)",
                                    [(gen, k, v) for k, v in meta.items()])
                    cur.executemany("INSERT INTO ix_feature_names(gen, name) VALUES (%s, %s)",
                                    [(gen, n) for n in sorted(source.feature_names())])
                conn.execute("INSERT INTO ix_current(one, generation, since) VALUES "
                             "(1, %s, %s) ON CONFLICT (one) DO UPDATE SET previous = "
                             "ix_current.generation, generation = excluded.generation, "
                             "since = excluded.since", [gen, time.time()])
        finally:
            source.close()
        self._remove_old()
        return gen

    def _remove_old(self) -> None:
        with self.db.connection() as conn, conn.transaction():
            cur = conn.execute("SELECT generation, previous FROM ix_current").fetchone()
            keep = [g for g in (cur["generation"], cur["previous"]) if g is not None]
            old = [r["id"] for r in conn.execute("SELECT id FROM ix_generations WHERE "
                                                 "id != ALL(%s)", [keep])]
            if old:
                for table in TABLES:   # static names: the table list above
                    conn.execute(f"DELETE FROM {table} WHERE gen = ANY(%s)", [old])
                conn.execute("DELETE FROM ix_generations WHERE id = ANY(%s)", [old])


class PgPredictionStore:
    """``PredictionStore``'s methods on one generation (``generation`` given: pinned to it, as
    the server's served store is), or on the current one, looked up again at most every
    ``FOLLOW_S`` (the delivery worker's)."""

    def __init__(self, index: PgIndex, generation: int | None = None) -> None:
        self.index, self.db = index, index.db
        self.follow = generation is None
        self._gen = generation
        self._checked = 0.0
        self._meta: dict[str, str] | None = None
        self._names: set[str] | None = None
        self._complete: set[str] = set()

    # -- which generation
    def gen(self) -> int:
        now = time.monotonic()
        if self._gen is None or (self.follow and now - self._checked >= FOLLOW_S):
            current = self.index.current()
            self._checked = now
            if current is None:
                raise IndexMissing("no prediction index in the database yet; run "
                                   "`labelbridge index --export PATH` (or start a replica "
                                   "with a prediction source)")
            if current != self._gen:
                self._gen, self._meta, self._names = current, None, None
                self._complete = set()
        return self._gen

    @property
    def inode(self) -> int | None:
        """The generation this store reads (what the SQLite store's file inode is)."""
        return self._gen

    @property
    def locator(self) -> str:
        """How a prepare worker opens the same generation (``open_locator``)."""
        return f"{self.index.locator}#generation={self.gen()}"

    @property
    def path(self) -> str:
        return self.locator

    def exists(self) -> bool:
        return self.index.current() is not None

    def close(self) -> None:
        """Nothing of its own: the pool is the index's."""

    def _all(self, sql: str, params: Sequence) -> list[dict]:
        with self.db.connection() as conn:
            return conn.execute(sql, params).fetchall()

    # -- metadata
    def meta(self) -> dict[str, str]:
        gen = self.gen()
        if self._meta is None:
            self._meta = {r["key"]: r["value"] for r in self._all(
                "SELECT key, value FROM ix_meta WHERE gen = %s", [gen])}
        return dict(self._meta)

    def feature_names(self) -> set[str]:
        gen = self.gen()
        if self._names is None:
            self._names = {r["name"] for r in self._all(
                "SELECT name FROM ix_feature_names WHERE gen = %s", [gen])}
        return set(self._names)

    def count(self) -> int:
        return int(self.meta().get("rows") or 0)

    # -- lookups
    def find(self, key: str, values: Sequence[str]) -> dict[str, int]:
        column = KEY_COLUMNS[key]   # a column name from the fixed table, never input
        found: dict[str, int] = {}
        for r in self._all(f"SELECT {column} AS v, pk FROM ix_rows WHERE {column} = ANY(%s) "
                           "AND gen = %s ORDER BY pk", [list(dict.fromkeys(values)), self.gen()]):
            found.setdefault(r["v"], r["pk"])
        return found

    def data_row(self, key: str, value: str) -> tuple[str | None, str | None] | None:
        column = KEY_COLUMNS[key]
        rows = self._all(f"SELECT data_row_id, global_key FROM ix_rows WHERE {column} = %s "
                         "AND gen = %s ORDER BY pk LIMIT 1", [value, self.gen()])
        return (rows[0]["data_row_id"], rows[0]["global_key"]) if rows else None

    def rows(self, pks: Sequence[int]) -> dict[int, tuple[str | None, bytes]]:
        return {r["pk"]: (r["origin"], r["payload"]) for r in self._all(
            "SELECT pk, origin, payload FROM ix_rows WHERE gen = %s AND pk = ANY(%s)",
            [self.gen(), list(pks)])}

    def iter_pks(self, batch: int = 1000) -> Iterator[list[int]]:
        gen, last = self.gen(), -1
        while True:
            pks = [r["pk"] for r in self._all("SELECT pk FROM ix_rows WHERE gen = %s AND pk > "
                                              "%s ORDER BY pk LIMIT %s", [gen, last, batch])]
            if not pks:
                return
            yield pks
            last = pks[-1]

    # -- prepared predictions
    def prepared(self, context: str, pks: Sequence[int]) -> dict[int, bytes]:
        return {r["pk"]: r["prediction"] for r in self._all(
            "SELECT pk, prediction FROM ix_prepared WHERE gen = %s AND context = %s AND "
            "pk = ANY(%s)", [self.gen(), context, list(pks)])}

    def put_prepared(self, context: str, items: Iterable[tuple[int, bytes]],
                     losses: Iterable[tuple[int, bytes]] = ()) -> None:
        gen = self.gen()
        with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO ix_prepared(gen, context, pk, prediction) VALUES "
                            "(%s, %s, %s, %s) ON CONFLICT (gen, context, pk) DO UPDATE SET "
                            "prediction = excluded.prediction",
                            [(gen, context, pk, b) for pk, b in items])
            cur.executemany("INSERT INTO ix_losses(gen, context, pk, losses) VALUES "
                            "(%s, %s, %s, %s) ON CONFLICT (gen, context, pk) DO UPDATE SET "
                            "losses = excluded.losses", [(gen, context, pk, b) for pk, b in losses])

    def iter_losses(self, context: str) -> Iterator[bytes]:
        gen, last = self.gen(), -1
        while True:
            chunk = self._all("SELECT pk, losses FROM ix_losses WHERE gen = %s AND context = %s"
                              " AND pk > %s ORDER BY pk LIMIT 1000", [gen, context, last])
            if not chunk:
                return
            for r in chunk:
                yield r["losses"]
            last = chunk[-1]["pk"]

    def register_context(self, context: str, label_config: str) -> None:
        self._all("INSERT INTO ix_contexts(gen, context, label_config, updated_at) VALUES "
                  "(%s, %s, %s, %s) ON CONFLICT (gen, context) DO UPDATE SET updated_at = "
                  "excluded.updated_at RETURNING context",
                  [self.gen(), context, label_config, time.time()])

    def drop_contexts(self, keep: int, spare: Iterable[str] = ()) -> list[str]:
        """As ``PredictionStore.drop_contexts``, for this generation (every replica's)."""
        gen, spared = self.gen(), set(spare)
        with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT context FROM ix_contexts WHERE gen = %s ORDER BY updated_at "
                        "DESC, context OFFSET %s", [gen, keep])
            old = [r["context"] for r in cur.fetchall() if r["context"] not in spared]
            for table in ("ix_prepared", "ix_losses", "ix_contexts"):
                cur.execute(f"DELETE FROM {table} WHERE gen = %s AND context = ANY(%s)",
                            [gen, old])
        self._complete.difference_update(old)
        return old

    def finish_context(self, context: str, report: dict) -> None:
        self._all("UPDATE ix_contexts SET complete = true, report = %s, updated_at = %s "
                  "WHERE gen = %s AND context = %s RETURNING context",
                  [orjson.dumps(report).decode(), time.time(), self.gen(), context])

    def context_complete(self, context: str) -> bool:
        if context in self._complete:
            return True
        rows = self._all("SELECT complete FROM ix_contexts WHERE gen = %s AND context = %s",
                         [self.gen(), context])
        if rows and rows[0]["complete"]:
            self._complete.add(context)
            return True
        return False

    def contexts(self) -> list[dict]:
        return [{"context": r["context"], "complete": r["complete"],
                 "report": orjson.loads(r["report"]) if r["report"] else None,
                 "updated_at": r["updated_at"]}
                for r in self._all("SELECT context, complete, report, updated_at FROM "
                                   "ix_contexts WHERE gen = %s ORDER BY updated_at", [self.gen()])]


def open_locator(locator: str) -> PgPredictionStore:
    """The store a ``PgPredictionStore.locator`` names (in a prepare worker process)."""
    url, _, gen = locator.partition("#generation=")
    return PgIndex(Database(url, max_size=2, name="labelbridge-prepare"), Path(".")).open(
        int(gen))
