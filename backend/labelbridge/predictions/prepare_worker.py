"""Preparing predictions in worker processes, one per CPU, for a large index.

Converting is pure Python and holds the GIL, so the predictor hands batches of row keys to
worker processes (``python -m labelbridge.predictions.prepare_worker``) that read the rows from
the index themselves (read-only), convert and validate them, and send back the predictions and
losses (``converting.Converted``); the predictor alone writes them. Protocol, framed as the
index workers' (``indexer.send_message``): stdin gets the pickled (index locator, the
predictor's ``RowConverter``), then pickled lists of row keys; each list is answered with
("done", Converted). A worker exits 0 when stdin closes. The converter comes built: its mapping
and check pickle without label-studio-sdk's parse of the config, so a worker starts in ~0.1 s
instead of ~0.5 s and imports the SDK only for a row the check leaves to it.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator

from labelbridge.predictions.converting import Converted
from labelbridge.predictions.indexer import (gc_paused, send_message, send_object, start_worker,
                                             worker_messages)
from labelbridge.predictions.store import PredictionStore

PARALLEL_MIN_ROWS = 10_000  # below this, starting workers costs more than it saves
BATCHES_PER_WORKER = 2      # the next batch waits in the pipe while a worker converts one
# glibc hands freed heap back to the kernel (above 128 KiB) and serves large blocks from fresh
# mappings, so each batch (~10 MB of rows in, ~8 MB of predictions out) had its pages faulted
# in and zeroed again: ~10% of a worker's CPU. A worker's heap is a few batches; it keeps it.
# Other C libraries ignore the variable.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728"


def worker_env() -> dict[str, str]:
    tunables = ":".join(t for t in (os.environ.get("GLIBC_TUNABLES"), MALLOC_TUNABLES) if t)
    return {"GLIBC_TUNABLES": tunables}


def worker_count(rows: int, wanted: int | None = None) -> int:
    if wanted is not None:
        return max(1, wanted)
    return len(os.sched_getaffinity(0)) if rows >= PARALLEL_MIN_ROWS else 1


class PreparePool:
    """Worker processes converting batches; ``results`` yields each batch's ``Converted`` as
    it arrives, giving the worker that sent it the next batch."""

    def __init__(self, setup: tuple, batches: Iterable[list[int]], workers: int) -> None:
        self.todo = iter(batches)
        self.busy: dict[subprocess.Popen, int] = {}
        for _ in range(workers):
            proc = start_worker("labelbridge.predictions.prepare_worker", setup, worker_env())
            self.busy[proc] = 0
            for _ in range(BATCHES_PER_WORKER):
                self._give(proc)

    def _give(self, proc: subprocess.Popen) -> None:
        batch = next(self.todo, None)
        if batch is not None:
            send_object(proc, batch)
            self.busy[proc] += 1

    def results(self) -> Iterator[Converted]:
        for proc, _, done in worker_messages(self.busy, "prepare worker"):
            self.busy[proc] -= 1
            self._give(proc)
            yield done

    def close(self) -> None:
        for proc in self.busy:
            if any(self.busy.values()):
                proc.kill()
            proc.stdin.close()  # type: ignore[union-attr]
        for proc in self.busy:
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]


def main() -> int:
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    index, converter = pickle.load(requests)
    if "#generation=" in index:   # the index in PostgreSQL
        from labelbridge.predictions.pg_store import open_locator
        store = open_locator(index)
    else:
        store = PredictionStore(Path(index))
    with gc_paused():
        while True:
            try:
                pks = pickle.load(requests)
            except EOFError:
                store.close()
                return 0
            send_message(answers, ("done", converter.batch(store.rows(pks), pks)))


if __name__ == "__main__":
    sys.exit(main())
