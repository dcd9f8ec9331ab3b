"""The durable delivery queue: idempotency, superseding, deletes, claims, outcomes, recovery,
a stateful property test and a group-commit concurrency test."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from labelbridge.groundtruth.outbox import (REJECTED_BODY_CAP, AppendResult, IncomingEvent, Outbox,
                                            OutboxClosed, ls_annotation_id, parse_timestamp)

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


def ts(n: float) -> str:
    """Label Studio's spelling of T0 + n seconds."""
    return (T0 + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def up(aid: int, n: float | str, task: int | None = None, project: int = 1,
       source: str = "webhook", payload: bytes | None = None,
       config: str | None = None) -> IncomingEvent:
    updated = n if isinstance(n, str) else ts(n)
    return IncomingEvent("upsert", aid, project, aid * 10 if task is None else task, updated,
                         payload if payload is not None else f"a{aid}@{updated}".encode(),
                         source, label_config_hash=config)


def dele(aid: int, project: int | None = 1, source: str = "webhook") -> IncomingEvent:
    return IncomingEvent("delete", aid, project, None, None, b"", source)


def ign(aid: int, n: float | None, reason: str = "was_cancelled: skipped task",
        task: int | None = None) -> IncomingEvent:
    return IncomingEvent("ignored", aid, 1, aid * 10 if task is None else task,
                         None if n is None else ts(n), b"{}", "webhook", reason=reason)


@pytest.fixture
def ob(tmp_path):
    box = Outbox(tmp_path / "data" / "outbox.sqlite3")
    yield box
    box.close()


def states(ob: Outbox, aid: int) -> list[tuple[str, str, str | None]]:
    """(kind, state, updated_at) of an annotation's items, oldest first."""
    return [(i["kind"], i["state"], i["updated_at"])
            for i in reversed(ob.items(limit=10_000)) if i["annotation_id"] == aid]


def claim_all(ob: Outbox, limit: int = 100, now: float | None = None):
    batch = ob.claim_batch(limit, now=now)
    assert batch is not None
    return batch


# --------------------------------------------------------------------------- basics

def test_creates_directory_wal_and_full_sync(tmp_path):
    path = tmp_path / "deep" / "dir" / "outbox.sqlite3"
    with Outbox(path) as box:
        assert path.exists()
        assert box._wconn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert box._wconn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert box._wconn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    raw = sqlite3.connect(path)
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "items", "annotations", "batches", "region_uuid", "rejected",
            "label_configs", "cursors"} <= tables
    raw.close()


def test_reopen_keeps_everything(tmp_path):
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        box.append([up(1, 1)])
    with Outbox(path) as box:
        assert box.status()["counts"]["pending"] == 1
        assert box.append([up(1, 1)]) == AppendResult(0, 1, 0, 0)


def test_timestamps_are_instants_not_strings():
    assert parse_timestamp("2026-11-22T12:00:00Z") == parse_timestamp("2026-11-22T14:00:00+02:00")
    assert parse_timestamp("2026-11-22T12:00:00.5Z") > parse_timestamp(
        "2026-11-22T12:00:00.123456Z")
    assert parse_timestamp("2026-11-22T12:00:00.123456789Z") == parse_timestamp(
        "2026-11-22T12:00:00.123456Z")
    assert parse_timestamp("2026-11-22 12:00:00") == parse_timestamp("2026-11-22T12:00:00Z")
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def test_invalid_event_writes_nothing(ob):
    with pytest.raises(ValueError):
        ob.append([up(1, 1), IncomingEvent("upsert", 2, 1, 20, None, b"x", "webhook")])
    with pytest.raises(ValueError):
        ob.append([up(1, 1), IncomingEvent("upsert", 3, 1, 30, "not a date", b"x", "webhook")])
    with pytest.raises(ValueError):
        ob.append([IncomingEvent("create", 3, 1, 30, ts(1), b"x", "webhook")])  # type: ignore
    assert ob.status()["events_total"] == 0


# --------------------------------------------------------------------------- rule 1

def test_rule1_same_upsert_twice_is_a_duplicate(ob):
    # the ML backend's auto webhook and a user's project webhook deliver the same event
    assert ob.append([up(1, 1, source="webhook")]) == AppendResult(1, 0, 0, 0)
    assert ob.append([up(1, 1, source="webhook")]) == AppendResult(0, 1, 0, 0)
    assert ob.append([up(1, 1, source="reconcile")]) == AppendResult(0, 1, 0, 0)
    # the same instant spelled differently (LS REST vs webhook serializers) is the same version
    same = (T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
    assert ob.append([up(1, same)]) == AppendResult(0, 1, 0, 0)
    # within one call too
    assert ob.append([up(2, 1), up(2, 1)]) == AppendResult(1, 1, 0, 0)
    st_ = ob.status()
    assert st_["events_total"] == 2
    assert st_["duplicates_total"] == 4
    assert len(ob.items()) == 2


def test_rule1_delete_twice_is_a_duplicate(ob):
    ob.append([up(1, 1)])
    b = claim_all(ob)
    ob.mark_delivered([b.items[0].id], b.id)
    assert ob.append([dele(1)]) == AppendResult(1, 0, 0, 0)
    assert ob.append([dele(1, source="reconcile")]) == AppendResult(0, 1, 0, 0)
    assert [s for s in states(ob, 1) if s[0] == "delete"] == [("delete", "pending", None)]


# --------------------------------------------------------------------------- rule 2

def test_rule2_newer_upsert_supersedes_pending(ob):
    ob.append([up(1, 1)])
    assert ob.append([up(1, 2)]) == AppendResult(1, 0, 0, 1)
    assert states(ob, 1) == [("upsert", "superseded", ts(1)), ("upsert", "pending", ts(2))]
    older, newer = sorted(ob.items(), key=lambda i: i["id"])
    assert older["superseded_by"] == newer["id"]


def test_rule2_older_version_arriving_late_is_superseded_at_once(ob):
    # by string, "...T13:00:00+02:00" > "...T12:00:00Z"; as instants it is one hour older
    newer = "2026-11-22T12:00:00Z"
    older = "2026-11-22T13:00:00+02:00"
    assert older > newer
    ob.append([up(1, newer)])
    assert ob.append([up(1, older)]) == AppendResult(1, 0, 0, 1)
    assert states(ob, 1) == [("upsert", "pending", newer), ("upsert", "superseded", older)]
    b = claim_all(ob)
    assert [i.updated_at for i in b.items] == [newer]


def test_rule2_one_pending_and_one_in_flight_per_annotation(ob):
    ob.append([up(1, 1)])
    b1 = claim_all(ob)
    ob.append([up(1, 2)])
    ob.append([up(1, 3)])
    assert states(ob, 1) == [("upsert", "in_flight", ts(1)), ("upsert", "superseded", ts(2)),
                             ("upsert", "pending", ts(3))]
    # the newer version waits for the in-flight one: per-annotation order
    assert ob.claim_batch(10) is None
    ob.mark_delivered([b1.items[0].id], b1.id)
    b2 = claim_all(ob)
    assert [i.updated_at for i in b2.items] == [ts(3)]


def test_rule2_retry_of_in_flight_yields_to_newer_pending(ob):
    ob.append([up(1, 1)])
    b1 = claim_all(ob)
    ob.append([up(1, 2)])
    ob.mark_retry([b1.items[0].id], "503", 0)
    assert states(ob, 1) == [("upsert", "superseded", ts(1)), ("upsert", "pending", ts(2))]
    assert [i.updated_at for i in claim_all(ob).items] == [ts(2)]


# --------------------------------------------------------------------------- rule 3

def test_rule3_delete_of_never_delivered_annotation(ob):
    ob.append([up(1, 1)])
    assert ob.append([dele(1)]) == AppendResult(1, 0, 0, 1)
    assert states(ob, 1) == [("upsert", "superseded", ts(1)), ("delete", "skipped", None)]
    assert ob.claim_batch(10) is None


def test_rule3_delete_of_unknown_annotation_is_skipped(ob):
    assert ob.append([dele(99)]) == AppendResult(1, 0, 0, 0)
    assert states(ob, 99) == [("delete", "skipped", None)]


def test_rule3_delete_of_delivered_annotation_is_queued(ob):
    ob.append([up(1, 1, task=7, project=3)])
    b = claim_all(ob)
    ob.mark_delivered([b.items[0].id], b.id)
    ob.record_delivered(1, {"globalKey": "img-7"}, "imp-1", ["u1"])
    ob.append([up(1, 2, task=7, project=3)])  # pending, never sent
    assert ob.append([dele(1, project=None)]) == AppendResult(1, 0, 0, 1)
    assert states(ob, 1) == [("upsert", "delivered", ts(1)), ("upsert", "superseded", ts(2)),
                             ("delete", "pending", None)]
    d = claim_all(ob)
    (item,) = d.items
    assert (item.kind, item.task_id, item.project_id) == ("delete", 7, 3)  # from the index
    assert item.data_row == {"globalKey": "img-7"}
    assert item.payload == b""


def test_rule3_upserts_after_delete_are_ignored(ob):
    ob.append([up(1, 1), dele(1)])
    assert ob.append([up(1, 5)]) == AppendResult(0, 0, 1, 0)
    ignored = ob.items(state="ignored")
    assert [(i["annotation_id"], i["last_error"]) for i in ignored] == [(1, "annotation deleted")]
    assert ob.append([up(1, 5)]) == AppendResult(0, 1, 0, 0)  # still idempotent
    assert ob.status()["counts"]["pending"] == 0


def test_rule3_delete_while_upsert_in_flight_waits_for_its_outcome(ob):
    # delivered: the delete goes out after it
    ob.append([up(1, 1)])
    b = claim_all(ob)
    ob.append([dele(1)])
    assert states(ob, 1)[-1] == ("delete", "pending", None)
    assert ob.claim_batch(10) is None  # not while the upsert is in flight
    ob.mark_delivered([b.items[0].id], b.id)
    assert [i.kind for i in claim_all(ob).items] == ["delete"]
    # retried (never reached Labelbox): nothing to delete
    ob.append([up(2, 1)])
    b = claim_all(ob)
    ob.append([dele(2)])
    ob.mark_retry([b.items[0].id], "timeout", 0)
    assert states(ob, 2) == [("upsert", "superseded", ts(1)), ("delete", "skipped", None)]


# --------------------------------------------------------------------------- rule 4

def test_rule4_ignored_events_are_logged_not_delivered(ob):
    assert ob.append([ign(1, 1)]) == AppendResult(0, 0, 1, 0)
    assert ob.append([ign(1, 1)]) == AppendResult(0, 1, 0, 0)
    assert ob.append([ign(2, None, reason="no result")]) == AppendResult(0, 0, 1, 0)
    assert ob.append([ign(2, None, reason="no result")]) == AppendResult(0, 1, 0, 0)
    assert ob.items() == []
    assert ob.claim_batch(10) is None
    rows = ob.items(state="ignored")
    assert {(r["annotation_id"], r["last_error"]) for r in rows} == {
        (1, "was_cancelled: skipped task"), (2, "no result")}
    st_ = ob.status()
    assert st_["counts"]["ignored"] == 2 and st_["events_total"] == 2
    assert ob.has_seen(1, ts(1))
    # a later real version of the same annotation is delivered normally
    assert ob.append([up(1, 2)]) == AppendResult(1, 0, 0, 0)


# --------------------------------------------------------------------------- rule 5

def test_rule5_annotation_index(ob):
    assert ob.annotation_task(1) is None
    ob.append([up(1, 1, task=42, project=5)])
    assert ob.annotation_task(1) == (5, 42)
    b = claim_all(ob)
    ob.mark_delivered([b.items[0].id], b.id)
    ob.append([IncomingEvent("delete", 1, None, None, None, b"", "webhook")])
    (item,) = [i for i in ob.items() if i["kind"] == "delete"]
    assert (item["task_id"], item["project_id"]) == (42, 5)
    assert ob.annotation_task(1) == (5, 42)


# --------------------------------------------------------------------------- claims

def test_claim_one_item_per_task_per_batch_in_arrival_order(ob):
    ob.append([up(1, 1, task=100), up(2, 1, task=100), up(3, 1, task=200), up(4, 1, task=300)])
    b1 = claim_all(ob)
    assert [i.annotation_id for i in b1.items] == [1, 3, 4]
    assert len({i.task_id for i in b1.items}) == len(b1.items)
    b2 = claim_all(ob)
    assert [i.annotation_id for i in b2.items] == [2]
    assert ob.claim_batch(10) is None


def test_claim_limit_and_work_item_fields(ob):
    ob.put_label_config("h1", "<View/>")
    ob.append([up(i, 1, payload=b"\x00\xffbody%d" % i, config="h1") for i in range(1, 6)])
    b = claim_all(ob, limit=2)
    assert [i.annotation_id for i in b.items] == [1, 2]
    first = b.items[0]
    assert first.payload == b"\x00\xffbody1"
    assert (first.kind, first.attempts, first.label_config_hash, first.data_row) == (
        "upsert", 1, "h1", None)
    assert first.updated_at == ts(1) and first.task_id == 10 and first.project_id == 1
    assert b.import_name is None
    assert ob.get_label_config("h1") == "<View/>"
    assert ob.get_label_config("nope") is None
    assert ob.claim_batch(0) is None


def test_claim_respects_next_attempt_at(ob):
    ob.append([up(1, 1)])
    b = claim_all(ob)
    t = time.time()
    assert ob.mark_retry([b.items[0].id], "HTTP 503", 30, now=t) == 1
    assert ob.claim_batch(10, now=t + 29) is None
    st_ = ob.status(now=t + 1)
    assert st_["next_retry_at"] == pytest.approx(t + 30)
    assert st_["due"] == 0
    b2 = claim_all(ob, now=t + 31)
    assert b2.items[0].attempts == 2
    assert ob.items()[0]["last_error"] == "HTTP 503"


def test_mark_failed_requeue(ob):
    ob.append([up(1, 1), up(2, 1)])
    b = claim_all(ob)
    ids = [i.id for i in b.items]
    assert ob.mark_failed(ids, "HTTP 400 invalid data row") == 2
    st_ = ob.status()
    assert st_["dead_letters"] == 2 and st_["counts"]["failed"] == 2
    assert ob.claim_batch(10) is None
    assert ob.requeue([ids[0]]) == 1
    item = [i for i in ob.items() if i["id"] == ids[0]][0]
    assert (item["state"], item["attempts"], item["last_error"]) == (
        "pending", 0, "HTTP 400 invalid data row")
    assert ob.requeue() == 1  # all remaining failed
    assert ob.status()["dead_letters"] == 0
    assert len(claim_all(ob).items) == 2


def test_requeue_of_stale_item_supersedes_it(ob):
    ob.append([up(1, 1)])
    b = claim_all(ob)
    ob.mark_failed([b.items[0].id], "boom")
    ob.append([up(1, 2)])
    assert ob.requeue() == 0
    assert states(ob, 1) == [("upsert", "superseded", ts(1)), ("upsert", "pending", ts(2))]


def test_outcomes_only_touch_in_flight_items(ob):
    ob.append([up(1, 1), up(2, 1)])
    b = claim_all(ob, limit=1)
    pending_id = [i["id"] for i in ob.items(state="pending")][0]
    assert ob.mark_delivered([b.items[0].id], b.id + 1) == 0  # wrong batch
    assert ob.mark_delivered([pending_id], b.id) == 0
    assert ob.mark_retry([pending_id], "x", 0) == 0
    assert ob.mark_failed([pending_id], "x") == 0
    assert ob.mark_delivered([b.items[0].id], b.id) == 1
    assert ob.mark_delivered([b.items[0].id], b.id) == 0  # already delivered
    assert ob.mark_skipped([pending_id], "nothing to do") == 1
    assert ob.status()["counts"] == {"pending": 0, "in_flight": 0, "delivered": 1, "failed": 0,
                                     "superseded": 0, "skipped": 1, "ignored": 0}


# --------------------------------------------------------------------------- recover

def test_recover(tmp_path):
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    box.append([up(i, 1) for i in range(1, 5)])
    a = box.claim_batch(2)
    b = box.claim_batch(2)
    box.set_import_name(b.id, "lb-import-b")
    box.close()  # "crash": nothing resolved

    box = Outbox(path)
    (rb,) = box.recover()
    assert (rb.id, rb.import_name) == (b.id, "lb-import-b")
    assert [i.id for i in rb.items] == [i.id for i in b.items]
    assert [i.attempts for i in rb.items] == [1, 1]
    back = {i["id"]: i for i in box.items(state="pending")}
    assert set(back) == {i.id for i in a.items}
    # the in-doubt items stay in flight (their annotations are not claimable)
    again = box.claim_batch(10)
    assert {i.id for i in again.items} == {i.id for i in a.items}
    assert all(i.attempts == 2 for i in again.items)
    assert box.mark_delivered([i.id for i in rb.items], rb.id) == 2
    box.mark_delivered([i.id for i in again.items], again.id)
    assert box.recover() == []
    assert box.status()["counts"]["delivered"] == 4
    box.close()


def test_recover_restores_single_pending_per_annotation(ob):
    ob.append([up(1, 1)])
    claim_all(ob)
    ob.append([up(1, 2)])
    assert ob.recover() == []
    assert states(ob, 1) == [("upsert", "superseded", ts(1)), ("upsert", "pending", ts(2))]


def test_import_names_are_unique(ob):
    ob.append([up(1, 1), up(2, 1, task=10)])
    a = claim_all(ob)
    b = claim_all(ob)
    ob.set_import_name(a.id, "imp")
    with pytest.raises(sqlite3.IntegrityError):
        ob.set_import_name(b.id, "imp")
    with pytest.raises(KeyError):
        ob.set_import_name(999, "other")


# --------------------------------------------------------------------------- records

def test_delivery_records(ob):
    assert ob.delivered_info(1) is None
    ob.append([up(1, 1)])
    ob.record_delivered(1, {"globalKey": "k"}, "imp-1", ["u1", "u2"])
    ob.record_region_ids(1, [("r1", "u1", "cfeat1"), ("r2", "u2", None)])
    ob.record_delivered(1, {"globalKey": "k"}, "imp-2", ["u1"])
    ob.record_region_ids(1, [("r1", "u1", None)])  # keeps the known feature id
    ob.set_label_ids(1, ["L1"])
    info = ob.delivered_info(1)
    assert info["data_row"] == {"globalKey": "k"}
    assert info["imports"] == ["imp-1", "imp-2"]
    assert info["label_ids"] == ["L1"]
    assert info["uuids"] == ["u1"]
    assert info["all_uuids"] == ["u1", "u2"]
    assert info["regions"] == [{"ls_region_id": "r1", "uuid": "u1", "lb_feature_id": "cfeat1"},
                               {"ls_region_id": "r2", "uuid": "u2", "lb_feature_id": None}]
    raw = sqlite3.connect(ob.path)
    assert raw.execute("SELECT annotation_id, ls_region_id, uuid, data_row, lb_feature_id"
                       " FROM region_uuid ORDER BY uuid").fetchall() == [
        (1, "r1", "u1", '{"globalKey":"k"}', "cfeat1"),
        (1, "r2", "u2", '{"globalKey":"k"}', None)]
    raw.close()
    # next claim of this annotation carries the data row
    assert claim_all(ob).items[0].data_row == {"globalKey": "k"}


def test_record_delivered_makes_a_delete_real(ob):
    # crash between record_delivered and mark_delivered: the delete must still go out
    ob.append([up(1, 1)])
    b = claim_all(ob)
    ob.record_delivered(1, {"id": "dr1"}, "imp", ["u"])
    ob.mark_retry([b.items[0].id], "crash", 0)
    ob.append([dele(1)])
    assert states(ob, 1)[-1] == ("delete", "pending", None)


def test_index_queries_used_by_reconciliation_and_delivery(ob):
    ob.append([up(1, 1, task=7, project=1), up(2, 1, task=7, project=1),
               up(3, 1, task=8, project=1), up(4, 1, task=9, project=2), ign(5, 1, task=8),
               dele(3)])
    assert ob.projects() == [1, 2]
    assert ob.task_annotations(7) == [1, 2]
    assert ob.task_annotations(8) == [5]  # 3 was deleted
    assert ob.is_deleted(3) and not ob.is_deleted(1) and not ob.is_deleted(99)
    assert ob.live_annotations(1) == [(1, 7), (2, 7), (5, 8)]
    # delivery windows: from the stored import name to the recorded delivery
    assert ob.import_windows(1) == [] and not ob.sole_delivered_on_task(1)
    b = ob.claim_batch(1)
    t0 = time.time()
    ob.set_import_name(b.id, "imp-a")
    ob.record_delivered(1, {"id": "dr7"}, "imp-a", ["u"])
    t1 = time.time()
    ob.mark_delivered([b.items[0].id], b.id)
    ((start, end),) = ob.import_windows(1)
    assert t0 <= start <= end <= t1
    assert ob.sole_delivered_on_task(1)
    ob.record_delivered(2, {"id": "dr7"}, "file-import", [])  # a name without a batch
    ((s2, e2),) = ob.import_windows(2)
    assert s2 == e2
    assert not ob.sole_delivered_on_task(1) and not ob.sole_delivered_on_task(2)


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


def test_has_seen_and_known_annotations(ob):
    ob.append([up(1, 1, project=1), up(1, 3, project=1), up(1, 2, project=1),
               up(2, 1, project=1), up(3, 1, project=2), ign(4, 7), up(5, 1), dele(5)])
    assert ob.has_seen(1, ts(2))
    assert ob.has_seen(1, (T0 + timedelta(seconds=3)).isoformat())  # another spelling
    assert not ob.has_seen(1, ts(4))
    assert ob.known_annotations(1) == {1: ts(3), 2: ts(1), 4: ts(7)}
    assert ob.known_annotations(2) == {3: ts(1)}


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


def test_event_log_keeps_every_accepted_event(ob):
    ob.append([up(1, 1, source="webhook"), up(1, 1, source="cli"), up(1, 0, source="reconcile"),
               ign(2, 1), dele(1)])
    raw = sqlite3.connect(ob.path)
    rows = raw.execute("SELECT kind, annotation_id, source, outcome, received_at > 0"
                       " FROM events ORDER BY id").fetchall()
    raw.close()
    assert rows == [("upsert", 1, "webhook", "queued", 1), ("upsert", 1, "reconcile",
                    "superseded", 1), ("ignored", 2, "webhook", "ignored", 1),
                    ("delete", 1, "webhook", "skipped", 1)]


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


# --------------------------------------------------------------------------- async + threads

def test_append_async_results_and_validation(ob):
    async def main():
        r1, r2 = await asyncio.gather(ob.append_async([up(1, 1), up(2, 1)]),
                                      ob.append_async([up(1, 1), ign(3, 1)]))
        with pytest.raises(ValueError):
            await ob.append_async([IncomingEvent("upsert", 9, 1, 9, "nope", b"", "webhook")])
        return r1, r2

    r1, r2 = asyncio.run(main())
    assert (r1.accepted + r2.accepted, r1.duplicates + r2.duplicates, r2.ignored) == (2, 1, 1)
    assert ob.status()["events_total"] == 3


def test_append_async_200_concurrent_callers(ob):
    callers, per_caller = 200, 10
    latencies: list[float] = []

    async def caller(k: int) -> list[AppendResult]:
        out = []
        for j in range(per_caller):
            aid = k * 1000 + j
            events = [up(aid, 1, task=aid, payload=b"p" * 1500)]
            if j == 0 and k > 0:
                events.append(up((k - 1) * 1000 + 5, 1, task=(k - 1) * 1000 + 5,
                                 payload=b"p" * 1500))  # one duplicate per caller
            t0 = time.perf_counter()
            out.append(await ob.append_async(events))
            latencies.append(time.perf_counter() - t0)
        return out

    async def main():
        return await asyncio.gather(*(caller(k) for k in range(callers)))

    t0 = time.perf_counter()
    results = [r for rs in asyncio.run(main()) for r in rs]
    elapsed = time.perf_counter() - t0
    unique = callers * per_caller
    assert sum(r.accepted for r in results) == unique
    assert sum(r.accepted + r.duplicates for r in results) == unique + callers - 1
    st_ = ob.status()
    assert st_["events_total"] == unique
    assert st_["counts"]["pending"] == unique
    assert st_["duplicates_total"] == callers - 1
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\nappend_async closed loop: {callers} callers, {unique} events in {elapsed:.2f}s ="
          f" {unique / elapsed:,.0f} events/s; p50 {latencies[len(latencies) // 2] * 1000:.1f}"
          f" ms, p99 {p99 * 1000:.1f} ms")


def test_append_async_paced_1000_events_per_second(ob):
    """200 callers, each sending 5 events/s (1,000 events/s in all) for 2 s."""
    callers, rate, seconds = 200, 5.0, 2.0
    latencies: list[float] = []

    async def caller(k: int) -> int:
        loop = asyncio.get_running_loop()
        start = loop.time() + k / (callers * rate)  # spread the callers evenly
        n = 0
        while n < rate * seconds:
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            aid = k * 1000 + n
            t0 = time.perf_counter()
            await ob.append_async([up(aid, 1, task=aid, payload=b"p" * 1500)])
            latencies.append(time.perf_counter() - t0)
            n += 1
        return n

    async def main():
        return sum(await asyncio.gather(*(caller(k) for k in range(callers))))

    t0 = time.perf_counter()
    total = asyncio.run(main())
    elapsed = time.perf_counter() - t0
    assert total == callers * rate * seconds
    assert ob.status()["events_total"] == total
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\nappend_async paced: {total} events in {elapsed:.2f}s = {total / elapsed:,.0f}"
          f" events/s; p50 {latencies[len(latencies) // 2] * 1000:.1f} ms,"
          f" p99 {p99 * 1000:.1f} ms")


def test_threads_append_while_a_worker_delivers(ob):
    """The HTTP server (sync appends here) and the delivery worker share one instance."""
    writers, per_writer = 8, 100
    stop = threading.Event()
    delivered: list[int] = []
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for j in range(per_writer):
                aid = w * 10_000 + j
                ob.append([up(aid, 1, task=j % 7), up(aid, 1, task=j % 7)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def worker() -> None:
        try:
            while True:
                b = ob.claim_batch(50)
                if b is None:
                    if stop.is_set():
                        return
                    time.sleep(0.001)
                    continue
                assert len({i.task_id for i in b.items}) == len(b.items)
                ob.mark_delivered([i.id for i in b.items], b.id)
                delivered.extend(i.annotation_id for i in b.items)
                ob.status()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    wt = threading.Thread(target=worker)
    wt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    wt.join()
    assert errors == []
    assert sorted(delivered) == sorted(w * 10_000 + j for w in range(writers)
                                       for j in range(per_writer))
    assert ob.status()["duplicates_total"] == writers * per_writer


# --------------------------------------------------------------------------- property test

BASE = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
TASK_OF = {1: 10, 2: 10, 3: 10, 4: 12}  # annotations 1, 2 and 3 share a task


def version_ts(v: int, spelling: int) -> str:
    """Several spellings of one instant; string order disagrees with time order across them."""
    t = BASE + timedelta(seconds=37 * v, microseconds=113 * v)
    if spelling == 0:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if spelling == 1:
        return t.isoformat()
    if spelling == 2:
        return t.astimezone(timezone(timedelta(hours=5))).isoformat()
    return t.astimezone(timezone(timedelta(hours=-3))).strftime("%Y-%m-%dT%H:%M:%S.%f-03:00")


class OutboxMachine(RuleBasedStateMachine):
    """Random interleavings of webhook events and worker outcomes against a simple model."""

    batches = Bundle("batches")

    @initialize()
    def setup(self):
        self.dir = tempfile.mkdtemp(prefix="outbox-prop-")
        self.path = Path(self.dir) / "o.sqlite3"
        self.ob = Outbox(self.path)
        self.keys: set = set()                    # idempotency keys sent so far
        self.history: list[IncomingEvent] = []     # every event sent (for resends)
        self.upserts: dict[int, set[int]] = {}     # accepted upsert versions per annotation
        self.deleted: set[int] = set()
        self.delivered: dict[int, list[int]] = {}  # delivered versions, in delivery order
        self.delete_delivered: set[int] = set()
        self.items_expected = 0                    # accepted upserts + deletes
        self.events_expected = 0                   # non-duplicate events
        self.open: dict[int, list] = {}           # batch id -> unresolved WorkItems
        self.named: set[int] = set()               # open batches with an import name
        self.failed = False                        # dead letters may exist

    def teardown(self):
        try:
            if hasattr(self, "ob"):
                self.drain_and_check()
                self.ob.close()
        finally:
            if hasattr(self, "dir"):
                shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model of append
    def expect(self, ev: IncomingEvent) -> str:
        if ev.kind == "delete":
            key = ("d", ev.annotation_id)
        elif ev.updated_at is not None:
            key = ("u", ev.annotation_id, parse_timestamp(ev.updated_at))
        else:
            key = ("i", ev.annotation_id, ev.reason)
        if key in self.keys:
            return "duplicate"
        self.keys.add(key)
        self.events_expected += 1
        if ev.kind == "ignored" or (ev.kind == "upsert" and ev.annotation_id in self.deleted):
            return "ignored"
        self.items_expected += 1
        if ev.kind == "delete":
            self.deleted.add(ev.annotation_id)
        else:
            self.upserts.setdefault(ev.annotation_id, set()).add(
                parse_timestamp(ev.updated_at))
        return "accepted"

    def send(self, events: list[IncomingEvent], use_async: bool = False) -> None:
        outcomes = [self.expect(ev) for ev in events]
        if use_async:
            async def go():
                return await self.ob.append_async(events)
            res = asyncio.run(go())
        else:
            res = self.ob.append(events)
        assert (res.accepted, res.duplicates, res.ignored) == (
            outcomes.count("accepted"), outcomes.count("duplicate"), outcomes.count("ignored"))
        self.history.extend(events)

    # -- events
    annotation = st.sampled_from(sorted(TASK_OF))
    event = st.one_of(
        st.builds(lambda a, v, s, src: IncomingEvent(
            "upsert", a, 1, TASK_OF[a], version_ts(v, s), b"v%d" % v, src),
            annotation, st.integers(0, 6), st.integers(0, 3),
            st.sampled_from(["webhook", "reconcile"])),
        st.builds(lambda a: IncomingEvent("delete", a, 1, None, None, b"", "webhook"),
                  annotation),
        st.builds(lambda a, v: IncomingEvent("ignored", a, 1, TASK_OF[a], version_ts(v, 0),
                                             b"", "webhook", reason="was_cancelled"),
                  annotation, st.integers(0, 6)),
    )

    @rule(ev=event)
    def append_one(self, ev):
        self.send([ev])

    @rule(evs=st.lists(event, min_size=2, max_size=5), use_async=st.booleans())
    def append_many(self, evs, use_async):
        self.send(evs, use_async)

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def resend(self, data):
        ev = data.draw(st.sampled_from(self.history))
        res = self.ob.append([IncomingEvent(ev.kind, ev.annotation_id, ev.project_id,
                                            ev.task_id, ev.updated_at, ev.payload, "cli",
                                            ev.reason)])
        assert res == AppendResult(0, 1, 0, 0)

    # -- the worker
    @rule(target=batches, limit=st.integers(1, 4))
    def claim(self, limit):
        in_flight = {i.annotation_id for items in self.open.values() for i in items}
        b = self.ob.claim_batch(limit)
        if b is None:
            return None
        assert 1 <= len(b.items) <= limit
        tasks = [i.task_id for i in b.items]
        assert len(set(tasks)) == len(tasks), "two items of one task in a batch"
        for i in b.items:
            assert i.annotation_id not in in_flight, "claimed an annotation already in flight"
            if i.kind == "upsert":
                assert i.annotation_id not in self.deleted
                # a claimable upsert is always the newest version received
                assert parse_timestamp(i.updated_at) == max(self.upserts[i.annotation_id])
                assert i.payload.startswith(b"v")
            else:
                assert i.annotation_id in self.deleted
        self.open[b.id] = list(b.items)
        return b.id

    @rule(bid=batches, data=st.data())
    def resolve(self, bid, data):
        items = self.open.get(bid)
        if not items:
            return
        chosen = data.draw(st.lists(st.sampled_from(items), unique_by=lambda i: i.id,
                                    min_size=1))
        for item in chosen:
            outcome = data.draw(st.sampled_from(["delivered", "delivered", "retry", "failed"]))
            if outcome == "delivered":
                assert self.ob.mark_delivered([item.id], bid) == 1
                if item.kind == "upsert":
                    seq = self.delivered.setdefault(item.annotation_id, [])
                    v = parse_timestamp(item.updated_at)
                    assert not seq or v > seq[-1], "delivered an older version after a newer"
                    seq.append(v)
                    self.ob.record_delivered(item.annotation_id, {"globalKey": "k"},
                                             f"imp-{bid}", ["u"])
                else:
                    self.delete_delivered.add(item.annotation_id)
            elif outcome == "retry":
                assert self.ob.mark_retry([item.id], "429", 0) == 1
            else:
                assert self.ob.mark_failed([item.id], "400") == 1
                self.failed = True
            items.remove(item)
        if not items:
            del self.open[bid]
            self.named.discard(bid)

    @rule(bid=batches)
    def name_import(self, bid):
        if bid in self.open and bid not in self.named:
            self.ob.set_import_name(bid, f"import-{bid}")
            self.named.add(bid)

    @precondition(lambda self: self.failed)
    @rule()
    def requeue(self):
        self.ob.requeue()
        self.failed = False

    @precondition(lambda self: self.open)
    @rule()
    def crash_and_recover(self):
        self.ob.close()
        self.ob = Outbox(self.path)
        recovered = self.ob.recover()
        assert {b.id for b in recovered} == self.named
        for b in recovered:
            assert b.import_name == f"import-{b.id}"
            assert {i.id for i in b.items} == {i.id for i in self.open[b.id]}
        self.open = {bid: items for bid, items in self.open.items() if bid in self.named}

    # -- invariants
    def rows(self):
        return self.ob._reader().execute(
            "SELECT id, kind, annotation_id, updated_us, state, superseded_by FROM items"
        ).fetchall()

    @invariant()
    def one_pending_one_in_flight(self):
        if not hasattr(self, "ob"):
            return
        per: dict[tuple[int, str], int] = {}
        for _, _, aid, _, state, _ in self.rows():
            per[(aid, state)] = per.get((aid, state), 0) + 1
        for (aid, state), n in per.items():
            if state in ("pending", "in_flight"):
                assert n <= 1, f"annotation {aid}: {n} items {state}"

    @invariant()
    def nothing_lost_and_duplicates_create_nothing(self):
        if not hasattr(self, "ob"):
            return
        rows = self.rows()
        assert len(rows) == self.items_expected
        st_ = self.ob.status()
        assert st_["events_total"] == self.events_expected
        by_version = {(aid, us): (state, sup) for _, kind, aid, us, state, sup in rows
                      if kind == "upsert"}
        for aid, versions in self.upserts.items():
            for v in versions:
                state, _ = by_version[(aid, v)]
                assert state in ("delivered", "superseded", "pending", "in_flight", "failed")
                if state == "superseded":
                    assert aid in self.deleted or v < max(versions), (
                        "superseded without a newer version or a delete")
        # in-flight rows are exactly the model's open batches
        in_flight = {r[0] for r in rows if r[4] == "in_flight"}
        assert in_flight == {i.id for items in self.open.values() for i in items}

    def drain_and_check(self):
        """Deliver everything (worker recovers from every failure) and check the end state."""
        for bid, items in list(self.open.items()):
            self.ob.mark_delivered([i.id for i in items], bid)
            for i in items:
                if i.kind == "upsert":
                    self.delivered.setdefault(i.annotation_id, []).append(
                        parse_timestamp(i.updated_at))
                else:
                    self.delete_delivered.add(i.annotation_id)
        self.open.clear()
        self.named.clear()
        self.ob.requeue()
        for _ in range(100):
            b = self.ob.claim_batch(100)
            if b is None:
                break
            self.ob.mark_delivered([i.id for i in b.items], b.id)
            for i in b.items:
                if i.kind == "upsert":
                    seq = self.delivered.setdefault(i.annotation_id, [])
                    v = parse_timestamp(i.updated_at)
                    assert not seq or v > seq[-1]
                    seq.append(v)
                    self.ob.record_delivered(i.annotation_id, {"globalKey": "k"}, "imp", [])
                else:
                    self.delete_delivered.add(i.annotation_id)
        counts = self.ob.status()["counts"]
        assert counts["pending"] == counts["in_flight"] == counts["failed"] == 0
        for aid, versions in self.upserts.items():
            if aid in self.deleted:
                # something reached Labelbox -> the delete did too
                assert (aid in self.delete_delivered) == bool(self.delivered.get(aid))
            else:
                assert self.delivered[aid][-1] == max(versions), (
                    "the last delivered version is not the newest")


OutboxMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestOutboxProperties = OutboxMachine.TestCase


# ----- Label Studio on SQLite reuses the ids of deleted annotations ----------------------------

def _up(aid, updated, created, task=1):
    return IncomingEvent("upsert", aid, 1, task, updated, b"p", "webhook", incarnation=created)


def test_a_reused_annotation_id_is_a_new_annotation(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    ob.append([_up(5, "2026-01-01T00:00:01Z", "2026-01-01T00:00:00Z")])
    batch = ob.claim_batch(10)
    ob.set_import_name(batch.id, "imp-1")
    ob.record_delivered(5, {"globalKey": "g"}, "imp-1", ["u1"])
    ob.mark_delivered([batch.items[0].id], batch.id)
    ob.append([IncomingEvent("delete", 5, 1, None, None, b"", "webhook")])
    delete = ob.claim_batch(10)
    assert [i.kind for i in delete.items] == ["delete"]
    ob.mark_delivered([delete.items[0].id], delete.id)
    # Label Studio gives the next annotation the same id: it must not be ignored as deleted
    result = ob.append([_up(5, "2026-01-02T00:00:01Z", "2026-01-02T00:00:00Z")])
    assert (result.accepted, result.ignored) == (1, 0)
    fresh = ob.claim_batch(10)
    (item,) = fresh.items
    assert item.kind == "upsert" and ls_annotation_id(item.annotation_id) == 5
    assert item.annotation_id != 5 and item.data_row is None   # nothing of the old one
    assert ob.has_seen(5, "2026-01-02T00:00:01Z", "2026-01-02T00:00:00Z")
    assert not ob.has_seen(5, "2026-01-03T00:00:00Z", "2026-01-03T00:00:00Z")
    # the same event again, and an update of the new incarnation, stay with it
    assert ob.append([_up(5, "2026-01-02T00:00:01Z", "2026-01-02T00:00:00Z")]).duplicates == 1
    ob.mark_delivered([item.id], fresh.id)
    ob.record_delivered(item.annotation_id, {"globalKey": "g"}, "imp-2", ["u2"])
    ob.append([IncomingEvent("delete", 5, 1, None, None, b"", "webhook")])
    (gone,) = ob.claim_batch(10).items
    assert gone.kind == "delete" and gone.annotation_id == item.annotation_id
    assert ob.task_annotations(1, 1) == []
    ob.close()


def test_spellings_of_the_creation_time_are_one_incarnation(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    ob.append([_up(8, "2026-01-01T00:00:01Z", "2026-01-01T00:00:00Z")])
    again = ob.append([_up(8, "2026-01-01T00:00:01+00:00", "2026-01-01T00:00:00.000000+00:00")])
    assert again.duplicates == 1
    assert ob.task_annotations(1) == [8]
    ob.close()


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
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            box.append([up(1, 1)])
        holder.join()
        assert box.append([up(2, 1)]).accepted == 1  # the connection is usable again
        assert box.status()["counts"]["pending"] == 1
    finally:
        box.close()
