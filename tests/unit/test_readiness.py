"""``/ready`` is degraded, naming why, when the outbox is unwritable, delivery is stuck or the
dead-letter queue grows; ``/health`` (Label Studio's check) stays UP meanwhile. A data dir made
read-only under a running server is in tests/integration/test_server_observability.py."""

from __future__ import annotations

import copy
import time

import pytest
from fastapi.testclient import TestClient

from labelbridge.service.readiness import Readiness
from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import capture, wait_for

CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")


def app(tmp_path, **env):
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path, LABELBRIDGE_BATCH_MAX_WAIT=0.05, **env)
    return TestClient(create_app(settings))


def ready(client) -> tuple[int, list[str]]:
    r = client.get("/ready")
    body = r.json()
    assert body["status"] == ("ready" if r.status_code == 200 else "degraded")
    return r.status_code, body["reasons"]


def test_a_fresh_service_is_ready(tmp_path):
    with app(tmp_path, LABELBRIDGE_DELIVERY_WORKER="off") as client:
        assert ready(client) == (200, [])


def test_a_deleted_outbox_makes_it_degraded_but_health_stays_up(tmp_path):
    with app(tmp_path, LABELBRIDGE_DELIVERY_WORKER="off") as client:
        for f in tmp_path.glob("outbox.sqlite3*"):
            f.unlink()
        status, reasons = ready(client)
        assert status == 503
        assert any(r.startswith("outbox unwritable") and "outbox.sqlite3 is missing" in r
                   and "LABELBRIDGE_DATA_DIR" in r for r in reasons), reasons
        assert client.get("/health").json()["status"] == "UP"


def test_items_waiting_too_long_mean_delivery_is_stuck(tmp_path):
    with app(tmp_path, LABELBRIDGE_DELIVERY_WORKER="off",
             LABELBRIDGE_READY_MAX_PENDING_AGE=0.3) as client:
        assert client.post("/webhook", json=CREATED).json()["accepted"] == 1
        time.sleep(0.4)
        status, reasons = ready(client)
        assert status == 503 and any("delivery stuck: the oldest pending item has waited"
                                     in r for r in reasons), reasons


def test_new_dead_letters_make_it_degraded_until_the_window_passes(tmp_path):
    with app(tmp_path, LABELBRIDGE_DELIVERY_WORKER="thread",
             LABELBRIDGE_READY_DEAD_LETTER_WINDOW=1.0) as client:
        assert ready(client) == (200, [])
        body = copy.deepcopy(CREATED)            # no data row to deliver to: a dead letter
        client.post("/webhook", json=body)
        wait_for(lambda: ready(client)[0] == 503, timeout=10)
        assert ready(client)[1] == ["dead-letter queue grows: 1 new within 1 s "
                                    "(labelbridge outbox dead)"]
        wait_for(lambda: ready(client) == (200, []), timeout=10)


@pytest.mark.parametrize("worker, reason", [
    ({"mode": "process", "alive": False, "restarts": 3},
     "delivery stuck: the delivery worker process is not running (3 restarts)"),
    ({"mode": "process", "alive": True, "restarts": 3}, None),
    ({"mode": "off"}, None),
])
def test_a_dead_worker_process_means_delivery_is_stuck(tmp_path, worker, reason):
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path)
    settings.outbox_db.write_bytes(b"")
    outbox = {"oldest_pending_age_s": None, "dead_letters": 0}
    reasons = Readiness(settings).check({"outbox": outbox, "delivery_worker": worker})
    assert reasons == ([reason] if reason else [])


def test_an_outbox_that_does_not_answer_is_a_reason(tmp_path):
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path)
    settings.outbox_db.write_bytes(b"")
    reasons = Readiness(settings).check({"outbox": None, "outbox_error": "OperationalError: "
                                         "disk I/O error"})
    assert reasons == ["outbox unavailable: OperationalError: disk I/O error"]
