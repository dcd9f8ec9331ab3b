"""The SQLite driver: WAL, fsync, the busy timeout, the write lock another connection holds."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from labelbridge.groundtruth.outbox import Outbox, OutboxBusy

from tests.unit.outbox.builders import up


def test_creates_directory_wal_and_full_sync(tmp_path):
    path = tmp_path / "deep" / "dir" / "outbox.sqlite3"
    with Outbox(path) as box:
        assert path.exists()
        assert box.storage._wconn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert box.storage._wconn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert box.storage._wconn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    raw = sqlite3.connect(path)
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "items", "annotations", "batches", "region_uuid", "rejected",
            "label_configs", "cursors"} <= tables
    raw.close()

def _hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another connection (another process's writer, say) holding the write lock a while."""
    held = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    return t

def test_a_writer_waits_for_the_lock_another_connection_holds(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3", busy_timeout_s=5)
    try:
        holder = _hold_write_lock(box.path, 0.3)
        assert box.append([up(1, 1)]).accepted == 1  # written once the lock is free
        holder.join()
        assert box.status()["counts"]["pending"] == 1
    finally:
        box.close()

def test_a_writer_gives_up_at_the_busy_timeout_and_leaves_no_transaction_open(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3", busy_timeout_s=0.2)
    try:
        holder = _hold_write_lock(box.path, 1.0)
        with pytest.raises(OutboxBusy, match="locked"):
            box.append([up(1, 1)])
        holder.join()
        assert box.append([up(2, 1)]).accepted == 1  # the connection is usable again
        assert box.status()["counts"]["pending"] == 1
    finally:
        box.close()
