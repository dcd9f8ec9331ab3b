"""The queue: claims, outcomes, requeue, recovery, import names."""

from __future__ import annotations

import time

import pytest

from labelbridge.groundtruth.outbox import DuplicateImportName, LeaseLost, Outbox

from tests.unit.outbox.builders import after_leases, claim_all, states, ts, up


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


def test_recover(outbox_location):
    path = outbox_location
    box = Outbox(path)
    box.append([up(i, 1) for i in range(1, 5)])
    a = box.claim_batch(2)
    b = box.claim_batch(2)
    box.set_import_name(b.id, "lb-import-b")
    box.close()  # "crash": nothing resolved

    box = Outbox(path)
    (rb,) = box.recover(now=after_leases())
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
    assert box.recover(now=after_leases()) == []
    assert box.status()["counts"]["delivered"] == 4
    box.close()


def test_recover_restores_single_pending_per_annotation(ob):
    ob.append([up(1, 1)])
    claim_all(ob)
    ob.append([up(1, 2)])
    assert ob.recover(now=after_leases()) == []
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


# --------------------------------------------------------------------------- leases

def test_a_claim_is_leased_to_its_owner_and_renewed_only_by_it(ob):
    ob.append([up(1, 1), up(2, 1)])
    t = time.time()
    b = ob.claim_batch(10, owner="w1", lease_s=30)
    assert (b.owner, b.attempts) == ("w1", 1) and t + 29 < b.lease_until < time.time() + 31
    assert ob.renew_lease(b.id, "w1", 60) and not ob.renew_lease(b.id, "w2", 60)
    (listed,) = ob.status()["batches"]
    assert (listed["state"], listed["owner"], listed["items"]) == ("leased", "w1", 2)
    assert 59 < listed["lease_left_s"] <= 60
    assert ob.take_over(owner="w2") is None               # held: nobody else touches it


def test_an_abandoned_unnamed_batch_goes_back_to_pending(ob):
    ob.append([up(1, 1)])
    b = ob.claim_batch(10, owner="w1", lease_s=0.05)
    time.sleep(0.1)
    assert ob.status()["batches"][0]["state"] == "abandoned" and ob.status()["stuck"] == 1
    assert ob.take_over(owner="w2") is None               # never sent: nothing to resume
    (item,) = ob.items(state="pending")
    assert item["id"] == b.items[0].id and "lease ended" in item["last_error"]
    assert ob.status()["batches"] == []
    assert claim_all(ob).items[0].attempts == 2


def test_an_abandoned_named_batch_is_taken_over_with_its_import_name(ob):
    ob.append([up(1, 1), up(2, 1)])
    b = ob.claim_batch(10, owner="w1", lease_s=0.05)
    ob.set_import_name(b.id, "imp-1", owner="w1")
    time.sleep(0.1)
    taken = ob.take_over(owner="w2", lease_s=30)
    assert (taken.id, taken.import_name, taken.owner, taken.attempts) == (b.id, "imp-1", "w2", 2)
    assert [i.id for i in taken.items] == [i.id for i in b.items]
    assert ob.take_over(owner="w3") is None                # w2 holds it now
    assert not ob.renew_lease(b.id, "w1", 30)              # w1 lost it
    with pytest.raises(LeaseLost):
        ob.set_import_name(b.id, "imp-other", owner="w1")


def test_a_postponed_batch_waits_then_is_taken_over(ob):
    ob.append([up(1, 1)])
    b = ob.claim_batch(10, owner="w1")
    ob.set_import_name(b.id, "imp-1", owner="w1")
    assert ob.postpone(b.id, "w1", 0.1, "429 on polling")
    listed = ob.status()["batches"][0]
    assert (listed["state"], listed["owner"], listed["last_error"]) == (
        "waiting", None, "429 on polling")
    assert ob.take_over(owner="w1") is None
    assert ob.status()["in_doubt"] == 1 and ob.claim_batch(10) is None  # still in flight
    time.sleep(0.15)
    assert ob.take_over(owner="w1").import_name == "imp-1"


def test_releasing_leases_lets_the_next_worker_take_over_at_once(ob):
    ob.append([up(1, 1), up(2, 1, task=20)])
    named = ob.claim_batch(1, owner="w1")
    ob.set_import_name(named.id, "imp-1", owner="w1")
    unnamed = ob.claim_batch(1, owner="w1")
    assert ob.release_leases("w1") == 2
    assert ob.take_over(owner="w2").id == named.id
    assert [i["id"] for i in ob.items(state="pending")] == [unnamed.items[0].id]


def test_split_batch_gives_each_item_a_batch_of_its_own(ob):
    ob.append([up(1, 1), up(2, 1, task=20), up(3, 1, task=30)])
    b = ob.claim_batch(10, owner="w1")
    ob.set_import_name(b.id, "imp-1", owner="w1")
    singles = ob.split_batch(b.id, "w1", "refused as a whole")
    assert [len(s.items) for s in singles] == [1, 1, 1]
    assert [s.items[0].id for s in singles] == [i.id for i in b.items]
    assert all(s.import_name is None and s.owner == "w1" for s in singles)
    assert {x["batch"] for x in ob.status()["batches"]} == {s.id for s in singles}
    assert ob.status()["in_doubt"] == 0


def test_ready_means_a_full_batch_or_the_earliest_due_item_waited(ob):
    t = time.time()
    assert not ob.ready(2, 30, now=t)
    ob.append([up(1, 1)])
    assert not ob.ready(2, 30, now=t + 1)
    assert ob.ready(2, 30, now=t + 31)
    ob.append([up(2, 1)])
    assert ob.ready(2, 30, now=time.time())
    b = ob.claim_batch(10)
    ob.mark_retry([i.id for i in b.items], "429", 100, now=t)
    assert not ob.ready(1, 0, now=t + 50)                 # nothing due yet
