"""The queue: claims, outcomes, requeue, recovery, import names."""

from __future__ import annotations

import time

import pytest

from labelbridge.groundtruth.outbox import DuplicateImportName, Outbox

from tests.unit.outbox.builders import claim_all, states, ts, up


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
    with pytest.raises(DuplicateImportName):
        ob.set_import_name(b.id, "imp")
    with pytest.raises(KeyError):
        ob.set_import_name(999, "other")
