"""A webhook refused for its token leaves a trace: a rate-limited log line without the body, a
row in ``outbox rejected`` (no body), and at the next start a warning naming the projects whose
webhooks lack the header (issue 17)."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from labelbridge.service import auth
from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import capture, rejected_bodies

TOKEN = "hook-secret"
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")   # project 1


def settings_for(tmp_path) -> Settings:
    return Settings(LABELBRIDGE_DATA_DIR=tmp_path, LABELBRIDGE_WEBHOOK_TOKEN=TOKEN,
                    LABELBRIDGE_DELIVERY_WORKER="off")


def refused_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "webhook refused" in r.getMessage()]


def test_refusals_are_logged_once_a_minute_and_kept_without_body(tmp_path, caplog):
    settings = settings_for(tmp_path)
    caplog.set_level(logging.INFO)
    other = dict(CREATED, project=dict(CREATED["project"], id=7))
    with TestClient(create_app(settings)) as client:
        for _ in range(20):
            assert client.post("/webhook", json=CREATED).status_code == 401
        assert client.post("/webhook", json=other, headers={"X-Labelbridge-Token": "nope"}
                           ).status_code == 401
        status = client.get("/status").json()
    lines = refused_lines(caplog)
    assert len(lines) == 2, lines
    assert "no X-Labelbridge-Token header (project 1)" in lines[0]
    assert "a wrong X-Labelbridge-Token header (project 7)" in lines[1]
    assert all(CREATED["project"]["token"] not in line for line in lines)
    rows = rejected_bodies(settings)
    assert [r["reason"] for r in rows] == [
        "401 unauthorized: a wrong X-Labelbridge-Token header (project 7)",
        "401 unauthorized: no X-Labelbridge-Token header (project 1)"]
    assert all(r["body"] == b"" for r in rows)
    assert status["counters"]["webhook_unauthorized"] == 21


def test_the_next_start_names_the_projects_seen_without_the_header(tmp_path, caplog):
    settings = settings_for(tmp_path)
    with TestClient(create_app(settings)) as client:
        client.post("/webhook", json=CREATED)
        client.post("/webhook", json=dict(CREATED, project=dict(CREATED["project"], id=12)))
    caplog.clear()
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(settings)):
        pass
    warnings = [r.getMessage() for r in caplog.records if "were refused for" in r.getMessage()]
    assert len(warnings) == 1
    assert "project(s) 1, 12" in warnings[0] and "labelbridge connect" in warnings[0]


def test_no_start_warning_without_a_token_or_without_refusals(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(settings_for(tmp_path))):
        pass
    assert not [r for r in caplog.records if "were refused for" in r.getMessage()]


def test_a_flood_of_refusals_fills_no_disk(tmp_path):
    settings = settings_for(tmp_path)
    with TestClient(create_app(settings)) as client:
        for pid in range(1, 201):                      # a project id of its own each time
            body = dict(CREATED, project=dict(CREATED["project"], id=pid))
            assert client.post("/webhook", json=body).status_code == 401
    assert len(rejected_bodies(settings)) == auth.RECORDS_PER_MINUTE
