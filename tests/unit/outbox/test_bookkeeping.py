"""Bookkeeping: rejected bodies, cursors, status and item listings."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from labelbridge.groundtruth.outbox import (REJECTED_BODY_CAP, AppendResult, Delivery, Outbox,
                                            OutboxClosed)

from tests.helpers import raw_rows
from tests.unit.outbox.builders import claim_all, dele, ign, ts, up


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


def test_closed_outbox_refuses(outbox_location):
    box = Outbox(outbox_location)
    box.close()
    box.close()
    with pytest.raises(OutboxClosed):
        box.append([up(1, 1)])
    with pytest.raises(OutboxClosed):
        asyncio.run(box.append_async([up(1, 1)]))
    with pytest.raises(OutboxClosed):
        box.status()


# --------------------------------------------------------------------------- retention

def test_retention_prunes_finished_work_and_keeps_what_is_still_needed(ob):
    ob.append([up(1, 1), up(2, 1, task=20), up(3, 1, task=30), up(4, 1, task=40), ign(5, 1),
               up(6, 1, task=60), up(6, 2, task=60)])           # 6@1 superseded by 6@2
    b = claim_all(ob)
    ids = {i.annotation_id: i.id for i in b.items}
    ob.set_import_name(b.id, "imp-1")
    ob.record_deliveries(b.id, "imp-1", [Delivery(ids[1], 1, {"globalKey": "k1"}, ["u1"],
                                                  [("r1", "u1", None)])])
    ob.mark_failed([ids[2]], "400")                             # a dead letter stays
    ob.mark_retry([ids[3]], "429", 3600)                        # pending stays
    ob.mark_delivered([ids[6]], b.id)
    ob.reject(b"{}", "bad", {})
    windows = ob.import_windows(1)
    assert ob.prune(time.time() - 3600) == 0                    # nothing that old
    pruned = ob.prune(time.time() + 1, limit=100)
    # items 1 and 6@2 delivered, 6@1 superseded (with their events), 5's ignored event, the
    # rejected body; the batch is still open (4 is in flight)
    assert pruned == 5
    st = ob.status()
    assert st["counts"] == {"pending": 1, "in_flight": 1, "delivered": 0, "failed": 1,
                            "superseded": 0, "skipped": 0, "ignored": 0}
    assert (st["events_total"], st["rejected"], st["pruned_total"]) == (3, 0, 5)
    # the annotation index outlives its events: the mapping, windows, duplicates, deletes
    assert ob.delivered_info(1)["regions"] == [{"ls_region_id": "r1", "uuid": "u1",
                                                "lb_feature_id": None}]
    assert ob.import_windows(1) == windows
    assert ob.append([up(1, 1), up(6, 2, task=60)]) == AppendResult(0, 2, 0, 0)
    assert ob.has_seen(1, ts(1)) and ob.has_seen(6, ts(2))
    assert ob.append([up(6, 1, task=60)]).superseded == 1      # older than the newest: moot
    assert ob.append([dele(1)]).accepted == 1
    assert ob.append([dele(1)]).duplicates == 1
    assert [i.kind for i in claim_all(ob).items] == ["delete"]


def test_pruning_goes_in_chunks(ob):
    ob.append([up(i, 1, task=i) for i in range(1, 8)])
    b = claim_all(ob)
    ob.mark_delivered([i.id for i in b.items], b.id)
    assert ob.prune(time.time() + 1, limit=3) == 3 + 0 + 1 + 0   # 3 items, the closed batch
    assert ob.prune(time.time() + 1, limit=3) == 3
    assert ob.prune(time.time() + 1, limit=3) == 1
    assert ob.prune(time.time() + 1, limit=3) == 0
    assert ob.status()["events_total"] == 0


def test_status_costs_the_same_however_long_the_history(ob, tmp_path):
    """Counts come from tallies the triggers keep, equal to counting the rows."""
    ob.append([up(i, 1, task=i) for i in range(1, 30)] + [ign(99, 1)])
    b = ob.claim_batch(10)
    ob.mark_delivered([i.id for i in b.items[:5]], b.id)
    ob.mark_failed([i.id for i in b.items[5:7]], "x")
    ob.append([up(1, 2, task=1)])
    by_state = dict(raw_rows(ob, "SELECT state, count(*) FROM items GROUP BY state"))
    (events,), = raw_rows(ob, "SELECT count(*) FROM events")
    st = ob.status()
    assert {k: v for k, v in st["counts"].items() if v and k != "ignored"} == by_state
    assert st["events_total"] == events and st["counts"]["ignored"] == 1


def test_what_is_due_and_what_retention_prunes_are_read_from_indexes(tmp_path):
    """The SQLite planner's choice (PostgreSQL's depends on the table's statistics)."""
    path = tmp_path / "o.sqlite3"
    Outbox(path).close()
    raw = sqlite3.connect(path)
    try:
        plan = " ".join(r[3] for r in raw.execute(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM items WHERE state = 'pending'"
            " AND next_attempt_at <= 1"))
        prune_plan = " ".join(r[3] for r in raw.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM items WHERE done_at < ? LIMIT 9", (1.0,)))
    finally:
        raw.close()
    assert "USING COVERING INDEX items_due" in plan
    assert "INDEX items_done" in prune_plan               # retention reads no history
