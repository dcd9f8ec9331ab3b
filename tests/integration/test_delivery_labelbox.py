"""Ground truth delivered to Labelbox (the strict stand-in, through the real SDK) by the service
running as a process: batching, exactly once under faults and crashes, updates, deletes,
dead letters."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.helpers import annotation_body as annotation
from tests.integration.lbservice import (CREATED, PROJECT, Service, lines_per_uuid, live_labels,
                                         service, standin, u5)
from tests.lbstandin import new_cuid

__all__ = ["service", "standin"]   # fixtures


def test_annotations_are_batched_and_delivered_exactly_once(service, standin):
    service.start(LABELBRIDGE_BATCH_MAX_WAIT="5", LABELBRIDGE_BATCH_SIZE="20")
    started = time.monotonic()
    for i in range(30):
        service.post(annotation(100 + i, 200 + i, f"img-{i}.jpg"))
    assert time.monotonic() - started < 5, "posting took longer than the batch wait"
    service.wait_delivered(30)
    imports = standin.imports(PROJECT)
    assert [len({l["dataRow"]["globalKey"] for l in i["lines"]}) for i in imports] == [20, 10]
    counts = lines_per_uuid(standin)
    for i in range(30):
        for suffix in "abw":
            assert counts[u5(f"r{100 + i}{suffix}")] == 1
    labels = live_labels(standin)
    assert Counter(l["global_key"] for l in labels) == {f"img-{i}.jpg": 1 for i in range(30)}
    car = next(l for l in labels[0]["annotations"] if l.get("name") == "Car")
    assert car["bbox"] == {"top": 96.0, "left": 64.0, "height": 192.0, "width": 192.0}
    assert car["classifications"] == [{"name": "attr", "answer": [{"name": "occluded"}]}]


def test_an_update_replaces_the_label_and_a_delete_removes_it(service, standin):
    service.start()
    service.post(annotation(7, 70, "img-7.jpg"))
    service.wait_delivered(1)
    service.post(annotation(7, 70, "img-7.jpg", x=50, action="ANNOTATION_UPDATED",
                            updated_at="2026-11-22T13:00:00Z"))
    service.wait_delivered(2)
    (label,) = [l for l in live_labels(standin) if l["global_key"] == "img-7.jpg"]
    car = next(l for l in label["annotations"] if l["uuid"] == u5("r7a"))
    assert car["bbox"]["left"] == 320.0                # the new version, alone
    service.post({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 7}],
                  "project": CREATED["project"]})
    service.wait_delivered(3)
    assert [l for l in live_labels(standin) if l["global_key"] == "img-7.jpg"] == []


def test_refused_lines_are_dead_letters_with_the_labelbox_message(service, standin):
    service.start()
    service.post(annotation(9, 90, "img-missing.jpg"))
    deadline = time.monotonic() + 20
    while service.status()["counts"]["failed"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    dead = service.cli("outbox", "dead")
    assert "DataRowNotFound" in dead.stdout and "annotation 9" in dead.stdout
    standin.add_data_rows(PROJECT, [{"id": new_cuid(), "global_key": "img-missing.jpg",
                                     "row_data": "http://img/m.jpg"}])
    assert "requeued 1" in service.cli("outbox", "retry").stderr
    service.wait_delivered(1)
    assert lines_per_uuid(standin)[u5("r9a")] == 1


@pytest.mark.parametrize("kind", ["429", "503"])
def test_rate_limits_and_server_errors_are_retried(service, standin, kind):
    service.start()
    standin.fail_next(4, kind, operations={"createLabelImport"})  # ~2.4 s of retries
    for i in range(5):
        service.post(annotation(300 + i, 400 + i, f"img-{i}.jpg"))
    service.wait_delivered(5, timeout=60)
    assert all(lines_per_uuid(standin)[u5(f"r{300 + i}a")] == 1 for i in range(5))
    assert len(standin.fault_log) == 4, standin.fault_log


def test_labelbox_down_then_back(service, standin):
    service.start()
    standin.go_down()
    for i in range(10):
        service.post(annotation(500 + i, 600 + i, f"img-{i}.jpg"))
    time.sleep(2.0)
    st = service.status()
    assert st["counts"]["delivered"] == 0 and st["counts"]["pending"] + \
        st["counts"]["in_flight"] == 10
    standin.come_back()
    service.wait_delivered(10, timeout=60)
    assert all(lines_per_uuid(standin)[u5(f"r{500 + i}a")] == 1 for i in range(10))


def test_killed_between_accept_and_delivery(service, standin):
    service.start(LABELBRIDGE_BATCH_MAX_WAIT="60")      # nothing is sent before the kill
    for i in range(10):
        service.post(annotation(700 + i, 800 + i, f"img-{i}.jpg"))
    service.kill()
    assert standin.imports(PROJECT) == []
    service.start(LABELBRIDGE_BATCH_MAX_WAIT="0.2")
    service.wait_delivered(10)
    counts = lines_per_uuid(standin)
    assert all(counts[u5(f"r{700 + i}a")] == 1 for i in range(10))


def test_killed_while_an_import_runs_resumes_it_instead_of_resending(service, standin):
    standin.set_import_duration(3600)                 # RUNNING until the kill
    service.start(LABELBRIDGE_BATCH_SIZE="10", LABELBRIDGE_BATCH_MAX_WAIT="30")  # one batch
    for i in range(10):
        service.post(annotation(900 + i, 1000 + i, f"img-{i}.jpg"))
    deadline = time.monotonic() + 20
    while not standin.imports(PROJECT) and time.monotonic() < deadline:
        time.sleep(0.05)
    service.kill()                                       # the import is still RUNNING
    standin.set_import_duration(0.5)
    service.start()
    service.wait_delivered(10, timeout=40)
    assert len(standin.imports(PROJECT)) == 1            # looked up by name, not sent again
    counts = lines_per_uuid(standin)
    assert all(counts[u5(f"r{900 + i}a")] == 1 for i in range(10))
    assert len(live_labels(standin)) == 10


def test_mal_imports_carry_relationships(tmp_path, standin):
    svc = Service(tmp_path, standin, LABELBOX_IMPORT_KIND="mal").start()
    try:
        svc.post(annotation(11, 110, "img-11.jpg"))
        svc.wait_delivered(1)
        (imp,) = standin.imports(PROJECT)
        assert imp["kind"] == "mal"
        rel = next(l for l in imp["lines"] if "relationship" in l)
        assert rel["relationship"] == {"source": u5("r11b"), "target": u5("r11a"),
                                       "type": "unidirectional"}
        assert all(s["status"] == "SUCCESS" for s in imp["statuses"])
    finally:
        svc.stop()
