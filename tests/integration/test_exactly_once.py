"""Exactly once under real faults, through the service process, the real labelbox SDK and the
Labelbox stand-in (issue 11). What counts is what the stand-in holds: one label per annotation.

1. A fault after the import may exist (on polling, on the status file, a lost answer to the
   creation, our own import timeout) continues with *that* import, looked up by name.
2. Whatever goes wrong with one annotation dead-letters it alone; a batch another worker claimed
   and abandoned (its lease expired) is taken over and resumed by its import name.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import annotation_body, wait_for
from tests.integration.lbservice import (CREATED, ONTOLOGY, PROJECT, Service, labels_per_row,
                                         lines_per_uuid, live_labels, make_standin, u5)

ROWS = 200
_next_id = itertools.count()


@pytest.fixture(scope="module")
def standin():
    s = make_standin(ROWS)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, standin):
    svc = Service(tmp_path_factory.mktemp("exactly-once"), standin,
                  LABELBRIDGE_IMPORT_TIMEOUT="1.5", LABELBRIDGE_LEASE_SECONDS="2").start()
    yield svc
    svc.stop()


def block(n: int = 5) -> list[int]:
    """Annotation ids (and data rows img-<id % ROWS>.jpg) no other test of this module uses."""
    return [next(_next_id) for _ in range(n)]


def post_all(service: Service, ids: list[int]) -> None:
    for i in ids:
        service.post(annotation_body(10_000 + i, 20_000 + i, f"img-{i % ROWS}.jpg"))


@pytest.fixture(autouse=True)
def calm(standin):
    standin.clear_faults()
    standin.set_import_duration(0.4)   # every import is polled at least once
    yield
    standin.clear_faults()


AFTER_CREATION = {
    "429 polling": ("429", {"labelImport"}),
    "dropped polling": ("drop", {"labelImport"}),
    "503 polling": ("503", {"labelImport"}),
    "429 status file": ("429", {"statusFile"}),
    "503 status file": ("503", {"statusFile"}),
    "dropped status file": ("drop", {"statusFile"}),
    "lost answer to the creation": ("lost", {"createLabelImport"}),
}


@pytest.mark.parametrize("case", AFTER_CREATION)
def test_a_fault_after_the_import_exists_continues_with_that_import(service, standin, case):
    kind, operations = AFTER_CREATION[case]
    ids = block()
    standin.fail_next(2, kind, operations)
    post_all(service, ids)
    states = service.wait_settled([10_000 + i for i in ids])
    assert standin.fault_log, "the fault was never injected"
    assert labels_per_row(standin, [f"img-{i}.jpg" for i in ids]) == {
        f"img-{i}.jpg": 1 for i in ids}
    counts = lines_per_uuid(standin)
    assert {counts[u5(f"r{10_000 + i}{s}")] for i in ids for s in "abw"} == {1}
    assert set(map(tuple, states.values())) == {("delivered",)}


def test_our_own_import_timeout_resumes_the_import_by_name(service, standin):
    ids = block()
    standin.set_import_duration(4.0)   # longer than LABELBRIDGE_IMPORT_TIMEOUT
    post_all(service, ids)
    states = service.wait_settled([10_000 + i for i in ids])
    assert labels_per_row(standin, [f"img-{i}.jpg" for i in ids]) == {
        f"img-{i}.jpg": 1 for i in ids}
    assert set(map(tuple, states.values())) == {("delivered",)}


def test_an_unconvertible_annotation_is_dead_alone_and_its_batch_mates_go_on(service, standin):
    ids = block(5)
    no_row = annotation_body(10_000 + ids[0], 20_000 + ids[0], "unused")
    no_row["task"]["data"] = {"image": "http://img/nowhere.jpg"}   # no data row to import to
    bad = annotation_body(10_000 + ids[1], 20_000 + ids[1], f"img-{ids[1]}.jpg")
    bad["annotation"]["result"][0]["value"] = [10, 20]          # one result not an object
    service.post(no_row)
    service.post(bad)
    post_all(service, ids[2:])
    states = service.wait_settled([10_000 + i for i in ids])
    assert states[10_000 + ids[0]] == ["failed"]
    assert all(states[10_000 + i] == ["delivered"] for i in ids[1:])
    # the bad result is a reported loss; the rest of that annotation reached Labelbox
    assert labels_per_row(standin, [f"img-{i}.jpg" for i in ids[1:]]) == {
        f"img-{i}.jpg": 1 for i in ids[1:]}
    dead = service.cli("outbox", "dead").stdout
    assert f"annotation {10_000 + ids[0]}" in dead and "cannot convert" in dead


def test_a_batch_whose_worker_died_is_taken_over_when_its_lease_expires(tmp_path):
    """Another worker (``labelbridge deliver``) claims a batch and dies in the import; the
    server's own worker, running all along, resumes that import by name after the lease."""
    standin = make_standin()
    svc = Service(tmp_path, standin, LABELBRIDGE_LEASE_SECONDS="2",
                  LABELBRIDGE_BATCH_SIZE="50", LABELBRIDGE_BATCH_MAX_WAIT="600")
    other = None
    try:
        svc.start()                          # its worker waits for 50 items or 10 minutes
        standin.set_import_duration(3600)    # RUNNING until the other worker is killed
        ids = list(range(5))
        post_all(svc, ids)
        other = subprocess.Popen([sys.executable, "-m", "labelbridge", "deliver"],
                                 env={**svc.env, "LABELBRIDGE_BATCH_MAX_WAIT": "0"},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not standin.imports(PROJECT) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert standin.imports(PROJECT), "the other worker never created its import"
        os.kill(other.pid, signal.SIGKILL)    # mid-import, its lease is never renewed again
        other.wait(10)
        standin.set_import_duration(0.5)
        assert "claimed batches" in svc.cli("outbox", "status").stderr
        (claimed,) = svc.status()["batches"]           # what it shows: state, age, import
        assert claimed["import_name"] == standin.imports(PROJECT)[0]["name"]
        assert claimed["state"] in ("leased", "abandoned") and claimed["age_s"] > 0
        states = svc.wait_settled([10_000 + i for i in ids], timeout=40)
        assert set(map(tuple, states.values())) == {("delivered",)}
        assert len(standin.imports(PROJECT)) == 1           # resumed, not sent again
        assert labels_per_row(standin, [f"img-{i}.jpg" for i in ids]) == {
            f"img-{i}.jpg": 1 for i in ids}
    finally:
        if other is not None and other.poll() is None:
            other.kill()
        svc.stop()
        standin.stop()


def test_an_annotation_labelbox_took_in_part_keeps_one_label_through_updates_retries_and_delete(
        tmp_path):
    """Labelbox refuses the Person box (not in this ontology) and takes the rest: its label holds
    them, and the annotation is a dead letter. That delivery is recorded, so an update and an
    `outbox retry` replace the label rather than add one, and a delete removes it."""
    standin = make_standin(5, ontology=[f for f in ONTOLOGY if f.name != "Person"])
    svc = Service(tmp_path, standin)
    aid, task = 10_900, 20_900
    try:
        svc.start()
        svc.post(annotation_body(aid, task, "img-1.jpg"))
        assert svc.wait_settled([aid]) == {aid: ["failed"]}
        (label,) = live_labels(standin)
        assert {a["name"] for a in label["annotations"]} == {"Car", "weather"}
        assert "FeatureNotFound" in svc.cli("outbox", "dead").stdout

        svc.post(annotation_body(aid, task, "img-1.jpg", x=50, action="ANNOTATION_UPDATED",
                                 updated_at="2026-11-22T13:00:00Z"))
        svc.wait_settled([aid])
        labels = live_labels(standin)
        assert len(labels) == 1, f"the update added a label: {labels}"
        car = next(a for a in labels[0]["annotations"] if a["name"] == "Car")
        assert car["bbox"]["left"] == 320.0           # the update's box

        assert "requeued 1" in svc.cli("outbox", "retry").stderr
        svc.wait_settled([aid])
        assert len(live_labels(standin)) == 1 and len(standin.imports(PROJECT)) == 3

        svc.post({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": aid}],
                  "project": CREATED["project"]})
        wait_for(lambda: not live_labels(standin), what="the label removed by the delete")
    finally:
        svc.stop()
        standin.stop()
