"""Where the served prediction index lives: a SQLite file of this process (``FileHome``), or
the PostgreSQL database several replicas share (``SharedHome``). ``LiveIndex`` asks a home to
build when the source moved on, whether an index exists, which one is current (a file's inode,
a generation) and for a store pinned to it.

Shared: a build runs on one replica at a time (the "index" job's advisory lock); the others
skip it and swap to the new generation once it is published, looking every ``poll_s``.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Callable, Protocol

from labelbridge.postgres.once import Jobs
from labelbridge.predictions import parts
from labelbridge.predictions import store as sqlite_store
from labelbridge.predictions.indexer import IndexResult
from labelbridge.predictions.pg_store import PgIndex, PgPredictionStore
from labelbridge.predictions.sources import Progress, Source, ensure, indexed_fingerprint
from labelbridge.predictions.store import PredictionStore

log = logging.getLogger(__name__)
SHARED_POLL_S = 2.0


class Home(Protocol):
    data_dir: Path
    poll_s: float | None   # how often to look for an index another process made; None: never

    def ensure(self, source: Source, progress: Progress | None = None,
               on_total: Callable[[int | None], None] | None = None,
               wait: bool = False) -> IndexResult | None:
        """Build if the source moved on; ``wait``: for another process's build to end."""

    def exists(self) -> bool: ...

    def fingerprint(self) -> str | None:
        """Of what the current index was built from (None: no index)."""

    def current_id(self) -> int | None: ...

    def open_pinned(self) -> PredictionStore | PgPredictionStore: ...


class FileHome:
    poll_s = None

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.data_dir = self.path.parent

    def ensure(self, source, progress=None, on_total=None, wait=False) -> IndexResult | None:
        return ensure(source, self.path, progress, on_total)

    def exists(self) -> bool:
        return self.path.exists()

    def fingerprint(self) -> str | None:
        return indexed_fingerprint(self.path)

    def current_id(self) -> int | None:
        return self.path.stat().st_ino if self.path.exists() else None

    def open_pinned(self) -> PredictionStore:
        return PredictionStore(self.path, follow=False)


class SharedHome:
    poll_s = SHARED_POLL_S

    def __init__(self, index: PgIndex, jobs: Jobs) -> None:
        self.index, self.jobs = index, jobs
        self.data_dir = index.work_dir

    def ensure(self, source, progress=None, on_total=None, wait=False) -> IndexResult | None:
        """Build and publish a new generation, unless another replica is building one now (with
        ``wait``: wait for it, at start, then look again) or the current one holds what the
        source offers."""
        with self.jobs.attempt("index", wait=wait) as mine:
            if not mine:
                log.info("prediction index: another replica is building it")
                return None
            offer = source.offer()
            if self.index.fingerprint() == offer.fingerprint:
                return None
            built = self.data_dir / f"predictions.build-{os.getpid()}.sqlite3"
            log.info("indexing %s (into the shared database)", offer.describe)
            try:
                result = source.build(offer, built, progress, on_total)
                gen = self.index.publish(built, f"{socket.gethostname()}:{os.getpid()}")
            finally:
                remove_built(built)
            log.info("indexed %d data rows from %s (model version %s): generation %d is "
                     "served by every replica", result.rows, offer.describe,
                     result.model_version, gen)
            return result

    def exists(self) -> bool:
        return self.index.current() is not None

    def fingerprint(self) -> str | None:
        return self.index.fingerprint()

    def current_id(self) -> int | None:
        return self.index.current()

    def open_pinned(self) -> PgPredictionStore:
        gen = self.index.current()
        if gen is None:
            raise sqlite_store.IndexMissing("no prediction index in the database yet")
        return self.index.open(gen)


def remove_built(path: Path) -> None:
    """A local SQLite index once published: the file and the payload parts it names."""
    for name in parts.listed_parts(path):
        path.with_name(name).unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
