"""Append decisions: idempotency (rule 1), superseding (2), deletes (3), ignored events (4),
the annotation index (5), incarnations of reused ids."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from labelbridge.groundtruth.outbox import AppendResult, IncomingEvent, Outbox, ls_annotation_id

from tests.helpers import raw_rows
from tests.unit.outbox.builders import T0, claim_all, dele, ign, states, ts, up


def test_reopen_keeps_everything(outbox_location):
    path = outbox_location
    with Outbox(path) as box:
        box.append([up(1, 1)])
    with Outbox(path) as box:
        assert box.status()["counts"]["pending"] == 1
        assert box.append([up(1, 1)]) == AppendResult(0, 1, 0, 0)


def test_invalid_event_writes_nothing(ob):
    with pytest.raises(ValueError):
        ob.append([up(1, 1), IncomingEvent("upsert", 2, 1, 20, None, b"x", "webhook")])
    with pytest.raises(ValueError):
        ob.append([up(1, 1), IncomingEvent("upsert", 3, 1, 30, "not a date", b"x", "webhook")])
    with pytest.raises(ValueError):
        ob.append([IncomingEvent("create", 3, 1, 30, ts(1), b"x", "webhook")])  # type: ignore
    assert ob.status()["events_total"] == 0


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


def test_event_log_keeps_every_accepted_event(ob):
    ob.append([up(1, 1, source="webhook"), up(1, 1, source="cli"), up(1, 0, source="reconcile"),
               ign(2, 1), dele(1)])
    rows = raw_rows(ob, "SELECT kind, annotation_id, source, outcome, received_at > 0"
                        " FROM events ORDER BY id")
    assert rows == [("upsert", 1, "webhook", "queued", 1), ("upsert", 1, "reconcile",
                    "superseded", 1), ("ignored", 2, "webhook", "ignored", 1),
                    ("delete", 1, "webhook", "skipped", 1)]


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
