"""The PostgreSQL driver: claims of several replicas at once, the write lock, a server that goes
away and comes back, errors translated, the schema versioned. (The same behaviour as SQLite is
shown by every other test of this folder, which runs on both engines.)"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from labelbridge.groundtruth.outbox import Outbox, OutboxBusy, OutboxUnavailable
from labelbridge.groundtruth.outbox.postgres import WRITE_LOCK
from labelbridge.postgres.database import Database, SchemaTooNew

from tests.pg import PgServer
from tests.unit.outbox.builders import up


def test_a_claim_skips_the_items_another_replica_is_claiming(pg_url):
    with Outbox(pg_url) as box:
        box.append([up(i, 1, task=i) for i in range(1, 7)])
        with psycopg.connect(pg_url) as other:   # another replica, in the middle of its claim
            other.execute("SELECT pg_advisory_xact_lock_shared(%s)", [WRITE_LOCK])
            locked = {r[0] for r in other.execute(
                "SELECT id FROM items ORDER BY id LIMIT 3 FOR UPDATE SKIP LOCKED")}
            started = time.monotonic()
            batch = box.claim_batch(10)
            assert time.monotonic() - started < 2          # it did not wait for the other
            assert len(batch.items) == 3 and not {i.id for i in batch.items} & locked
        # the other claim ended without committing: its items are there to claim
        assert {i.id for i in box.claim_batch(10).items} == locked


def test_replicas_claiming_at_once_never_claim_one_item_twice(pg_url):
    with Outbox(pg_url) as feeder:
        feeder.append([up(i, 1, task=i) for i in range(1, 301)])
    claimed: list[list[int]] = []
    boxes = [Outbox(pg_url) for _ in range(3)]
    start = threading.Barrier(len(boxes))

    def claim(box: Outbox) -> None:
        start.wait()
        while (batch := box.claim_batch(7)) is not None:
            claimed.append([i.id for i in batch.items])

    threads = [threading.Thread(target=claim, args=(b,)) for b in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [i for batch in claimed for i in batch]
    assert len(ids) == len(set(ids)) == 300
    assert boxes[0].status()["counts"]["in_flight"] == 300
    for b in boxes:
        b.close()


def test_a_writer_gives_up_at_the_busy_timeout(pg_url):
    with Outbox(pg_url, busy_timeout_s=0.3) as box, psycopg.connect(pg_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])  # a long write
        with pytest.raises(OutboxBusy, match="lock"):
            box.append([up(1, 1)])
        holder.rollback()
        assert box.append([up(1, 1)]).accepted == 1   # usable again


def test_a_server_that_goes_away_is_unavailable_until_it_is_back():
    with PgServer(durable=True) as server:
        url = server.create_database("bridge")
        box = Outbox(url, busy_timeout_s=2)
        try:
            box.append([up(1, 1)])
            server.crash()
            for _ in range(2):   # the broken connection, then the refused ones
                with pytest.raises(OutboxUnavailable):
                    box.append([up(2, 1)])
            assert box.health()["ok"] is False
            server.restart()
            deadline = time.monotonic() + 20
            while True:
                try:
                    box.append([up(2, 1)])
                    break
                except OutboxUnavailable:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert box.health() == {"ok": True, "error": None}
            assert box.status()["counts"]["pending"] == 2   # nothing acknowledged was lost
        finally:
            box.close()


def test_an_unreachable_database_is_named_without_its_password(pg_server):
    url = f"postgresql://bridge:s3cret@127.0.0.1:{pg_server.port + 1}/nowhere"
    with pytest.raises(OutboxUnavailable) as err:
        Outbox(url, busy_timeout_s=1)
    assert "127.0.0.1" in str(err.value) and "s3cret" not in str(err.value)


def test_the_schema_is_versioned_and_a_newer_one_is_refused(pg_url):
    Outbox(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT component, version FROM labelbridge_schema "
                            "WHERE component = 'outbox'").fetchone() == ("outbox", 1)
        conn.execute("UPDATE labelbridge_schema SET version = 99 WHERE component = 'outbox'")
    db = Database(pg_url)
    try:
        with pytest.raises(SchemaTooNew, match="version 99, newer than this labelbridge"):
            db.migrate("outbox", 1, lambda conn, found: None)
    finally:
        db.close()
