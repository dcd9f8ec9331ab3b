"""The SQLite driver: WAL, fsync, the busy timeout, the write lock another connection holds."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from labelbridge.groundtruth.outbox import Outbox, OutboxBusy, OutboxUnavailable
from labelbridge.groundtruth.outbox import sqlite as sqlite_driver
from labelbridge.groundtruth.outbox import storage

from tests.helpers import FIXTURES as ALL_FIXTURES
from tests.unit.outbox.builders import up

FIXTURES = ALL_FIXTURES / "outbox"


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


# --------------------------------------------------------------------------- the file is ours

def test_a_deleted_file_stops_writes_and_reads_and_no_new_file_appears(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    try:
        box.append([up(1, 1)])
        (tmp_path / "o.sqlite3").unlink()
        with pytest.raises(OutboxUnavailable, match="was deleted"):
            box.append([up(2, 1)])
        with pytest.raises(OutboxUnavailable, match="was deleted"):
            box.status()
        seen = []
        threading.Thread(target=lambda: seen.append(_try(box.items))).start()
        time.sleep(0.2)
        assert isinstance(seen[0], OutboxUnavailable)         # a new reader thread too
        assert not (tmp_path / "o.sqlite3").exists()
        assert box.health() == {"ok": False, "error": str(seen[0])}
    finally:
        box.close()


def _try(fn):
    try:
        return fn()
    except Exception as exc:
        return exc


def test_a_replaced_file_is_not_written(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    try:
        other = Outbox(tmp_path / "other.sqlite3")
        other.close()
        (tmp_path / "other.sqlite3").replace(tmp_path / "o.sqlite3")
        with pytest.raises(OutboxUnavailable, match="replaced by another file"):
            box.append([up(1, 1)])
    finally:
        box.close()
    with Outbox(tmp_path / "o.sqlite3") as fresh:
        assert fresh.status()["events_total"] == 0


def test_health_after_a_failed_write_and_its_recovery(tmp_path, monkeypatch, caplog):
    box = Outbox(tmp_path / "o.sqlite3")
    try:
        assert box.health() == {"ok": True, "error": None}
        many = sqlite_driver._Tx.many
        monkeypatch.setattr(sqlite_driver._Tx, "many", _full)
        with pytest.raises(OutboxUnavailable, match="disk is full"):
            box.append([up(1, 1)])
        assert "disk is full" in box.health()["error"]
        assert "outbox unavailable" in caplog.text
        monkeypatch.setattr(sqlite_driver._Tx, "many", many)
        monkeypatch.setattr(storage, "PROBE_AFTER_S", 0.0)   # health tries a write
        assert box.health() == {"ok": True, "error": None}
        assert "writable again" in caplog.text
    finally:
        box.close()


def _full(*args, **kw):
    raise sqlite3.OperationalError("database or disk is full")


def test_a_version_1_file_is_migrated(tmp_path):
    path = tmp_path / "v1.sqlite3"
    raw = sqlite3.connect(path)
    raw.executescript((FIXTURES / "schema-v1.sql").read_text())
    raw.executescript("""
        INSERT INTO events(id, received_at, source, kind, annotation_id, dedup_key, outcome,
                           payload) VALUES (1, 1, 'webhook', 'upsert', 7, 'u:7:1', 'queued', x''),
                          (2, 1, 'webhook', 'ignored', 8, 'i:8:', 'ignored', x'');
        INSERT INTO items(id, event_id, kind, annotation_id, task_id, updated_us, state,
                          attempts, batch_id, created_at, changed_at)
               VALUES (1, 1, 'upsert', 7, 70, 1, 'in_flight', 1, 1, 1, 1);
        INSERT INTO annotations(annotation_id, task_id, latest_us, first_seen_at, changed_at)
               VALUES (7, 70, 1, 1, 1);
        INSERT INTO batches(id, created_at, size, import_name, import_set_at)
               VALUES (1, 1, 1, 'imp-v1', 5);
        INSERT INTO annotation_imports(annotation_id, import_name, recorded_at, uuids)
               VALUES (7, 'imp-v1', 9, '[]');
        PRAGMA user_version = 1;""")
    raw.close()
    with Outbox(path) as box:
        st = box.status()
        assert st["counts"]["in_flight"] == 1 and st["counts"]["ignored"] == 1
        assert st["events_total"] == 2
        assert box.import_windows(7) == [(5.0, 9.0)]
        taken = box.take_over(owner="w")               # a v1 claim has no lease: free now
        assert (taken.import_name, [i.id for i in taken.items]) == ("imp-v1", [1])
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
    raw.close()
