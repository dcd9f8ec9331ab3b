"""Bookkeeping: rejected bodies, cursors, status and item listings."""

from __future__ import annotations

import asyncio
import time

import pytest

from labelbridge.groundtruth.outbox import REJECTED_BODY_CAP, Outbox, OutboxClosed

from tests.unit.outbox.builders import ign, up


def test_rejected_bodies(ob):
    rid = ob.reject(b'{"action": 1}', "schema: action", {"content-type": "application/json"})
    big = b"x" * (REJECTED_BODY_CAP + 10)
    rid2 = ob.reject(big, "too large", {})
    rows = ob.rejected()
    assert [r["id"] for r in rows] == [rid2, rid]
    assert rows[1]["body"] == b'{"action": 1}' and not rows[1]["truncated"]
    assert rows[1]["headers"] == {"content-type": "application/json"}
    assert rows[1]["reason"] == "schema: action"
    assert len(rows[0]["body"]) == REJECTED_BODY_CAP and rows[0]["truncated"]
    assert rows[0]["body_size"] == REJECTED_BODY_CAP + 10
    assert ob.rejected(limit=1)[0]["id"] == rid2
    assert ob.status()["rejected"] == 2

def test_cursors(ob):
    assert ob.get_cursor("p1") is None
    ob.set_cursor("p1", "2026-11-22T12:00:00Z")
    ob.set_cursor("p1", "2026-11-22T13:00:00Z")
    assert ob.get_cursor("p1") == "2026-11-22T13:00:00Z"

def test_status_counts(ob):
    t = time.time()
    ob.append([up(1, 1), up(2, 1), up(3, 1), up(4, 1), up(5, 1), ign(6, 1), up(7, 1), up(7, 2)])
    ob.append([up(1, 1)])  # duplicate
    b = ob.claim_batch(4, now=t + 1)
    ids = [i.id for i in b.items]
    ob.mark_delivered(ids[:1], b.id)
    ob.mark_failed(ids[1:2], "bad")
    ob.mark_retry(ids[2:3], "later", 60, now=t)
    ob.reject(b"?", "bad json", {})
    st_ = ob.status(now=t + 2)
    assert st_["counts"] == {"pending": 3, "in_flight": 1, "delivered": 1, "failed": 1,
                             "superseded": 1, "skipped": 0, "ignored": 1}
    assert st_["dead_letters"] == 1
    assert st_["rejected"] == 1
    assert st_["events_total"] == 8
    assert st_["duplicates_total"] == 1
    assert st_["due"] == 2
    assert st_["next_retry_at"] == pytest.approx(t + 60)
    assert st_["oldest_pending_age_s"] >= 0
    assert st_["in_doubt"] == 0
    rows = ob.items(state="failed")
    assert [(r["id"], r["last_error"], r["attempts"]) for r in rows] == [(ids[1], "bad", 1)]
    assert set(ob.items()[0]) >= {"id", "kind", "annotation_id", "task_id", "project_id",
                                  "state", "attempts", "last_error", "updated_at",
                                  "created_at", "changed_at"}
    with pytest.raises(ValueError):
        ob.items(state="bogus")

def test_closed_outbox_refuses(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    box.close()
    box.close()
    with pytest.raises(OutboxClosed):
        box.append([up(1, 1)])
    with pytest.raises(OutboxClosed):
        asyncio.run(box.append_async([up(1, 1)]))
    with pytest.raises(OutboxClosed):
        box.status()
