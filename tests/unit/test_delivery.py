"""Delivery (groundtruth/delivery.py) over a real outbox (SQLite in tmp_path, and PostgreSQL),
with a handler-driven fake Sink: batches, the import name stored before the call, per-line refusals,
dead letters, retries, deletes and updates that remove earlier labels, resume after a crash."""

from __future__ import annotations

import time
import uuid

import pytest

from labelbridge.groundtruth.converter import GroundTruthConverter, resolver_from_store
from labelbridge.groundtruth.delivery import Deliverer, DeliveryPolicy
from labelbridge.groundtruth.outbox import IncomingEvent, Outbox, OutboxUnavailable
from labelbridge.labelstudio import webhooks
from labelbridge.labelstudio.mapping import Overrides
from labelbridge.model.ids import LABELBRIDGE_NAMESPACE
from labelbridge.model.sink import (ImportOutcome, ImportRejected, LabelRef, LineStatus,
                                    PermanentError, TransientError)

from tests.fakes import FakeSink, SinkCall, accept_all
from tests.helpers import annotation_body, capture

CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
CONFIG = CREATED["project"]["label_config"]


def u5(region_id: str) -> str:
    return str(uuid.uuid5(LABELBRIDGE_NAMESPACE, region_id))


def body(ann_id: int, task_id: int, **kw) -> dict:
    """Annotation ``ann_id`` of task ``task_id`` (data row img-<task>), regions r<ann>a|b|w."""
    return annotation_body(ann_id, task_id, f"img-{task_id}", **kw)


def queue(ob: Outbox, *bodies: dict, keep_config: bool = True) -> None:
    """What the webhook does with these bodies (runtime.Runtime.accept)."""
    for b in bodies:
        parsed = webhooks.parse(b)
        h = webhooks.label_config_hash(parsed.label_config)
        if keep_config:
            ob.put_label_config(h, parsed.label_config)
        ob.append([IncomingEvent(c.kind, c.annotation_id, c.project_id, c.task_id, c.updated_at,
                                 c.payload, "webhook", c.reason, h, c.created_at)
                   for c in parsed.changes])


def delete(ob: Outbox, ann_id: int) -> None:
    ob.append([IncomingEvent("delete", ann_id, 1, None, None, b"", "webhook")])


@pytest.fixture
def ob(outbox_location):
    box = Outbox(outbox_location)
    yield box
    box.close()


def deliverer(ob: Outbox, sink: FakeSink, **policy) -> Deliverer:
    converter = GroundTruthConverter(ob.get_label_config, Overrides(), resolver_from_store(None),
                                     lambda: set(), include_relations=False)
    return Deliverer(ob, sink, converter, DeliveryPolicy(**{"max_wait": 0, "retry_base": 0.01,
                                                           "retry_max": 0.01, **policy}))


def counts(ob: Outbox) -> dict:
    return {k: v for k, v in ob.status()["counts"].items() if v}


def test_a_batch_is_one_import_named_before_the_call(ob):
    queue(ob, *(body(10 + i, 100 + i) for i in range(3)))
    names_at_call = []

    def handler(call: SinkCall):
        # the import name is on disk when the sink is called (a crash now resumes by name)
        with Outbox(ob.path or ob.url) as beside:
            names_at_call.append(beside.status()["in_doubt"])
        return accept_all(call)

    sink = FakeSink(handler)
    deliverer(ob, sink).drain()
    (imp,) = sink.imports()
    assert imp.name.startswith("labelbridge-") and not imp.resume
    assert names_at_call == [3]
    assert {line["uuid"] for line in imp.lines} == {u5(f"r{10 + i}{s}") for i in range(3)
                                                    for s in "abw"}
    assert counts(ob) == {"delivered": 3}
    info = ob.delivered_info(10)
    assert info["data_row"] == {"globalKey": "img-100"} and info["imports"] == [imp.name]
    assert sorted(info["uuids"]) == sorted(u5(f"r10{s}") for s in "abw")


def test_a_refused_line_dead_letters_its_annotation_alone(ob):
    queue(ob, body(1, 100), body(2, 200))

    def handler(call: SinkCall):
        out = accept_all(call)
        out.statuses[u5("r2b")] = LineStatus(u5("r2b"), False, ("DataRowNotFound: gone",))
        return out

    deliverer(ob, FakeSink(handler)).drain()
    assert counts(ob) == {"delivered": 1, "failed": 1}
    (dead,) = ob.items("failed")
    assert dead["annotation_id"] == 2 and "DataRowNotFound: gone" in dead["last_error"]


def test_a_line_without_status_is_a_dead_letter(ob):
    queue(ob, body(1, 100))

    def handler(call: SinkCall):
        return ImportOutcome(call.name, {})

    deliverer(ob, FakeSink(handler)).drain()
    (dead,) = ob.items("failed")
    assert "no status from Labelbox" in dead["last_error"]


def test_a_permanent_error_dead_letters_the_batch_with_the_message(ob):
    queue(ob, body(1, 100), body(2, 200))

    def handler(call: SinkCall):
        raise PermanentError("AuthorizationError: no access to project")

    deliverer(ob, FakeSink(handler)).drain()
    assert counts(ob) == {"failed": 2}
    assert {i["last_error"] for i in ob.items("failed")} == {
        "AuthorizationError: no access to project"}


def test_an_annotation_the_converter_refuses_is_dead_alone(ob):
    queue(ob, body(1, 100), body(2, 200))
    # annotation 3 was made with a label config the outbox never received
    other = body(3, 300)
    other["project"] = dict(other["project"], label_config=CONFIG.replace("rainy", "foggy"))
    queue(ob, other, keep_config=False)
    unknown = webhooks.label_config_hash(other["project"]["label_config"])
    sink = FakeSink()
    deliverer(ob, sink).drain()
    assert counts(ob) == {"delivered": 2, "failed": 1}
    (dead,) = ob.items("failed")
    assert dead["annotation_id"] == 3
    assert dead["last_error"] == f"cannot convert: label config {unknown[:12]} is unknown"
    assert len(sink.imports()) == 1


def test_a_converter_bug_dead_letters_only_its_annotation(ob):
    """Whatever the converter raises (here an AttributeError, as a result whose ``value`` was a
    list once raised) is that annotation's problem, not its batch's."""
    queue(ob, body(1, 100), body(2, 200), body(3, 300))
    d = deliverer(ob, FakeSink())
    real = d.converter.convert

    def convert(payload: bytes):
        if webhooks.decode(payload).annotation["id"] == 2:
            raise AttributeError("'list' object has no attribute 'get'")
        return real(payload)

    d.converter.convert = convert
    d.drain()
    assert counts(ob) == {"delivered": 2, "failed": 1}
    (dead,) = ob.items("failed")
    assert dead["annotation_id"] == 2
    assert dead["last_error"] == "cannot convert: AttributeError: 'list' object has no " \
                                 "attribute 'get'"
    assert len(d.sink.imports()) == 1 and ob.status()["batches"] == []


def run_steps(d: Deliverer, until, seconds: float = 10) -> None:
    """What the worker's loop does: steps, surviving whatever a step raises."""
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        try:
            d.step(wait_for_full_batch=False)
        except Exception:
            pass
        time.sleep(0.02)


def test_a_transient_error_after_naming_resumes_that_import_by_name(ob):
    queue(ob, body(1, 100), body(2, 200))
    failures = iter([TransientError("429 on polling")] * 3)

    def handler(call: SinkCall):
        exc = next(failures, None)
        if exc is not None:
            raise exc
        return accept_all(call)

    sink = FakeSink(handler)
    d = deliverer(ob, sink, max_attempts=2)   # a transient failure is never a dead letter
    run_steps(d, lambda: counts(ob) == {"delivered": 2})
    assert counts(ob) == {"delivered": 2}
    names = {c.name for c in sink.imports()}
    assert len(names) == 1 and [c.resume for c in sink.imports()] == [False, True, True, True]


def test_a_bug_after_naming_is_retried_by_name_then_dead_with_the_import_name(ob):
    queue(ob, body(1, 100))

    def handler(call: SinkCall):
        raise RuntimeError("boom")

    sink = FakeSink(handler)
    d = deliverer(ob, sink, max_attempts=3)
    run_steps(d, lambda: counts(ob).get("failed") == 1)
    (dead,) = ob.items("failed")
    name = sink.imports()[0].name
    assert dead["last_error"] == f"gave up after 3 attempts at import {name}: RuntimeError: boom"
    assert {c.name for c in sink.imports()} == {name} and len(sink.imports()) == 3


def test_an_abandoned_batch_is_taken_over_and_resumed_by_its_import_name(ob):
    queue(ob, body(1, 100), body(2, 200))
    crashed = ob.claim_batch(10, owner="gone-worker", lease_s=0.2)
    ob.set_import_name(crashed.id, "labelbridge-crashed", owner="gone-worker")
    sink = FakeSink()
    d = deliverer(ob, sink)
    assert d.step(wait_for_full_batch=False) is False      # still leased: not touched
    time.sleep(0.25)
    d.drain()
    (imp,) = sink.imports()
    assert (imp.name, imp.resume) == ("labelbridge-crashed", True)
    assert counts(ob) == {"delivered": 2}


def test_a_long_import_keeps_its_lease(ob):
    queue(ob, body(1, 100))
    taken = []

    def handler(call: SinkCall):
        for _ in range(6):    # 1.2 s, four leases long: the lease is renewed meanwhile
            time.sleep(0.2)
            taken.append(ob.take_over(owner="another-worker", lease_s=1))
        return accept_all(call)

    d = deliverer(ob, FakeSink(handler), lease_s=0.3)
    d.drain()
    assert taken == [None] * 6 and counts(ob) == {"delivered": 1}


def test_a_failure_storing_the_import_name_leaves_no_batch_stuck(ob, monkeypatch):
    queue(ob, body(1, 100), body(2, 200))
    store = ob.set_import_name
    full = iter([OutboxUnavailable("database or disk is full")])

    def set_import_name(*args, **kw):
        exc = next(full, None)
        if exc is not None:
            raise exc
        return store(*args, **kw)

    monkeypatch.setattr(ob, "set_import_name", set_import_name)
    sink = FakeSink()
    run_steps(deliverer(ob, sink), lambda: counts(ob) == {"delivered": 2})
    assert counts(ob) == {"delivered": 2} and len(sink.imports()) == 1


def test_when_even_giving_the_batch_back_fails_its_lease_runs_out(ob, monkeypatch):
    queue(ob, body(1, 100))
    calls = {"set_import_name": 0, "mark_retry": 0}
    for method in calls:
        real = getattr(ob, method)

        def failing_once(*args, _real=real, _name=method, **kw):
            calls[_name] += 1
            if calls[_name] == 1:
                raise OutboxUnavailable("database or disk is full")
            return _real(*args, **kw)

        monkeypatch.setattr(ob, method, failing_once)
    sink = FakeSink()
    d = deliverer(ob, sink, lease_s=0.3)
    d.step(wait_for_full_batch=False)               # logged; the batch stays claimed
    assert ob.status()["batches"][0]["state"] == "leased"
    run_steps(d, lambda: counts(ob) == {"delivered": 1})
    assert counts(ob) == {"delivered": 1} and len(sink.imports()) == 1


def test_an_import_refused_as_a_whole_goes_again_annotation_by_annotation(ob):
    queue(ob, body(1, 100), body(2, 200), body(3, 300))

    def handler(call: SinkCall):
        if any(line["uuid"] == u5("r2a") for line in call.lines):
            raise ImportRejected("Labelbox rejected import: the file was not accepted")
        return accept_all(call)

    sink = FakeSink(handler)
    deliverer(ob, sink).drain()
    assert counts(ob) == {"delivered": 2, "failed": 1}
    (dead,) = ob.items("failed")
    assert dead["annotation_id"] == 2 and "not accepted" in dead["last_error"]
    assert [len(c.lines) for c in sink.imports()] == [9, 3, 3, 3]
    assert len({c.name for c in sink.imports()}) == 4 and ob.status()["batches"] == []


def test_stopping_gives_the_leases_back(ob):
    queue(ob, body(1, 100))
    d = deliverer(ob, FakeSink())
    batch = ob.claim_batch(10, owner=d.owner)
    ob.set_import_name(batch.id, "labelbridge-interrupted", owner=d.owner)
    d.stop()
    assert ob.take_over(owner="next-worker").import_name == "labelbridge-interrupted"


def test_a_delete_removes_the_labels_of_its_imports_only(ob):
    queue(ob, body(1, 100))
    sink = FakeSink()
    deliverer(ob, sink).drain()
    ((start, end),) = ob.import_windows(1)
    delete(ob, 1)

    def handler(call: SinkCall):
        assert call.op == "remove_labels" and call.data_row == {"globalKey": "img-100"}
        return [LabelRef("old", start - 3600), LabelRef("ours", end)]

    sink.handler = handler
    deliverer(ob, sink).drain()
    # annotation 1 is the only one of its task Labelbox got: every label of ours is its own
    (removal,) = sink.removals()
    assert removal.removed == ["old", "ours"]
    assert removal.annotation_id == 1
    assert sorted(removal.uuids) == sorted(u5(f"r1{s}") for s in "abw")
    assert counts(ob) == {"delivered": 2}
    assert ob.delivered_info(1)["label_ids"] == ["old", "ours"]


def test_a_delete_of_a_shared_task_removes_labels_within_its_import_windows(ob):
    queue(ob, body(1, 100))
    deliverer(ob, FakeSink()).drain()
    queue(ob, body(2, 100))                               # another annotation of the task
    deliverer(ob, FakeSink()).drain()
    ((start, end),) = ob.import_windows(1)
    delete(ob, 1)
    sink = FakeSink(lambda call: [LabelRef("ours", end), LabelRef("theirs", end + 3600)])
    deliverer(ob, sink).drain()
    assert sink.removals()[0].removed == ["ours"]


def update_delivered(ob: Outbox, sink: FakeSink, imports, labels: list[str]) -> SinkCall:
    """Annotation 1 updated and delivered (``imports`` answers the import), its data row then
    holding ``labels`` (oldest first: the last is the update's); the removal that made."""
    queue(ob, body(1, 100, x=50, updated_at="2026-11-22T13:00:00Z"))
    now = time.time()
    offered = [LabelRef(label, now - len(labels) + i) for i, label in enumerate(labels, 1)]
    sink.handler = lambda call: imports(call) if call.op == "import_lines" else offered
    deliverer(ob, sink).drain()
    (removal,) = sink.removals()
    return removal


def test_an_update_removes_the_earlier_label_when_the_sink_does_not_replace(ob):
    queue(ob, body(1, 100))
    sink = FakeSink(replaces_by_uuid=False)
    deliverer(ob, sink).drain()
    assert sink.removals() == []                           # first delivery: nothing to remove
    removal = update_delivered(ob, sink, accept_all, ["first", "second"])
    assert removal.removed == ["first"]                    # the newest is the new import's
    assert (removal.annotation_id, sorted(removal.uuids)) == (1, sorted(u5(f"r1{s}")
                                                                        for s in "abw"))
    assert counts(ob) == {"delivered": 2}
    assert len(ob.delivered_info(1)["imports"]) == 2


def test_what_labelbox_took_of_a_refused_annotation_is_recorded_and_replaced_later(ob):
    """Line r1b refused, r1a and r1w taken (Labelbox made a label of them): the annotation is a
    dead letter whose delivery is recorded, so its update removes that label, and so does its
    delete."""
    queue(ob, body(1, 100))

    def refuse_b(call: SinkCall):
        out = accept_all(call)
        if call.op == "import_lines":
            out.statuses[u5("r1b")] = LineStatus(u5("r1b"), False, ("FeatureNotFound: x",))
        return out

    sink = FakeSink(refuse_b, replaces_by_uuid=False)
    deliverer(ob, sink).drain()
    (dead,) = ob.items("failed")
    assert "FeatureNotFound: x" in dead["last_error"]
    info = ob.delivered_info(1)
    assert sorted(info["uuids"]) == sorted([u5("r1a"), u5("r1w")])
    assert {r["uuid"] for r in info["regions"]} == {u5("r1a"), u5("r1w")}

    removal = update_delivered(ob, sink, refuse_b, ["partial", "update"])
    assert removal.removed == ["partial"]            # the update's label stays
    assert counts(ob) == {"failed": 2}                 # each version a dead letter

    delete(ob, 1)
    sink.handler = lambda call: [LabelRef("update", time.time())]
    deliverer(ob, sink).drain()
    assert sink.removals()[-1].removed == ["update"]


def test_an_update_whose_removal_fails_is_retried(ob):
    queue(ob, body(1, 100))
    sink = FakeSink(replaces_by_uuid=False)
    deliverer(ob, sink).drain()
    queue(ob, body(1, 100, x=50, updated_at="2026-11-22T13:00:00Z"))

    def handler(call: SinkCall):
        if call.op == "remove_labels":
            raise TransientError("503")
        return accept_all(call)

    sink.handler = handler
    d = deliverer(ob, sink)
    d.step(wait_for_full_batch=False)
    (item,) = ob.items("pending")
    assert "removing the earlier label failed: 503" in item["last_error"]


def test_the_worker_waits_for_a_full_batch_or_the_oldest_item_to_age(ob):
    queue(ob, body(1, 100))
    sink = FakeSink()
    d = deliverer(ob, sink, batch_size=2, max_wait=30)
    assert d.step() is False and sink.calls == []         # one of two, and young
    queue(ob, body(2, 200))
    assert d.step() is True and len(sink.imports()[0].lines) == 6
    queue(ob, body(3, 300))
    d = deliverer(ob, sink, batch_size=2, max_wait=0)
    assert d.step() is True                               # old enough
