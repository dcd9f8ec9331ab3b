"""No client input breaks the server: every refusal is a 4xx JSON body naming the field, and a
refused webhook body is kept (issue 16, defects 1 and 4). Each case here answered 500, or a
307 redirect, before the fix."""

from __future__ import annotations

import base64
import json
import copy

import pytest
from fastapi.testclient import TestClient

from labelbridge.groundtruth.outbox import INCARNATION_STEP
from labelbridge.labelstudio import webhooks
from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import capture, rejected_bodies

TOKEN = "hook-secret"
HOOK = {"X-Labelbridge-Token": TOKEN}
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
PREDICT = capture("e2e-flow/ml-backend_POST-predict_dm-retrieve-predictions.json")


def deep(levels: int, leaf=1):
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.fixture()
def client(tmp_path):
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path, LABELBRIDGE_WEBHOOK_TOKEN=TOKEN,
                        BASIC_AUTH_USER="ls", BASIC_AUTH_PASS="s3cret",
                        LABELBRIDGE_DELIVERY_WORKER="off")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.settings = settings
        yield c


def edit(path: str, value):
    """A copy of the captured ANNOTATION_CREATED with one field (dotted path) set."""
    body = copy.deepcopy(CREATED)
    *parents, last = path.split(".")
    node = body
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[last] = value
    return body


def bulk(**annotation) -> dict:
    body = copy.deepcopy(CREATED)
    body.update(action="ANNOTATIONS_CREATED", annotation=[{**body["annotation"], **annotation}],
                task=[body["task"]])
    return body


BAD_WEBHOOKS = [
    ("non-ISO updated_at", edit("annotation.updated_at", "yesterday"),
     ["annotation", "updated_at"]),
    ("non-ISO created_at", edit("annotation.created_at", "2026-13-45T99:00:00Z"),
     ["annotation", "created_at"]),
    ("numeric created_at", edit("annotation.created_at", 1795349409),
     ["annotation", "created_at"]),
    ("out-of-range offset", edit("annotation.updated_at", "0001-01-01T00:00:00+14:00"),
     ["annotation", "updated_at"]),
    ("annotation id 2^63", edit("annotation.id", 2 ** 63), ["annotation", "id"]),
    ("annotation id 2^64 - 1", edit("annotation.id", 2 ** 64 - 1), ["annotation", "id"]),
    ("annotation id past the incarnation step", edit("annotation.id", INCARNATION_STEP),
     ["annotation", "id"]),
    ("negative annotation id", edit("annotation.id", -5), ["annotation", "id"]),
    ("task id 2^63", edit("task.id", 2 ** 63), ["task", "id"]),
    ("project id 2^63", edit("project.id", 2 ** 63), ["project", "id"]),
    ("bulk annotation id 2^63", bulk(id=2 ** 63), ["annotation", 0, "id"]),
    ("deleted id 2^63", {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 2 ** 63}],
                         "project": CREATED["project"]}, ["annotations", 0, "id"]),
    ("300 deep in task.data", edit("task.data.nested", deep(300)), ["task", "data", "nested"]),
    ("300 deep in a result value", edit("annotation.result.0.value", deep(300)),
     ["annotation", "result", 0, "value"]),
    ("300 deep, and the body fails validation", {"action": 5, "x": deep(300)}, ["action"]),
]


@pytest.mark.parametrize("name, body, loc", BAD_WEBHOOKS, ids=[c[0] for c in BAD_WEBHOOKS])
def test_bad_webhook_bodies_get_422_naming_the_field_and_are_kept(client, name, body, loc):
    before = len(rejected_bodies(client.settings))
    r = client.post("/webhook", content=json.dumps(body),
                    headers={**HOOK, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"][:len(loc) + 1] == ["body", *loc] and err["msg"]
    kept = rejected_bodies(client.settings)
    assert len(kept) == before + 1
    assert kept[0]["reason"].startswith(".".join(str(p) for p in loc))
    assert kept[0]["body"]


def test_a_valid_event_with_deep_project_fields_is_accepted(client):
    body = edit("project.parsed_label_config", deep(300))   # not stored: no limit needed
    r = client.post("/webhook", content=json.dumps(body),
                    headers={**HOOK, "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 1


def test_the_largest_allowed_id_is_accepted(client):
    r = client.post("/webhook", json=edit("annotation.id", webhooks.MAX_ID), headers=HOOK)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert webhooks.MAX_ID < INCARNATION_STEP


@pytest.mark.parametrize("value", [b"Basic \xff\xfe\xfd", b"Basic bHM6czNjcmV0\xe9",
                                   b"Basic " + base64.b64encode("ls:s3cret\u00e9".encode()),
                                   b"\xc3\xa9 x", b"Basic !!!!", b"Basic"])
@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/health"), ("POST", "/setup"),
                                          ("POST", "/predict"), ("GET", "/versions"),
                                          ("GET", "/metrics"), ("GET", "/status"),
                                          ("GET", "/ready"), ("GET", "/openapi.json")])
def test_undecodable_basic_auth_is_401_json_on_every_guarded_endpoint(client, method, path,
                                                                      value):
    r = client.request(method, path, json={}, headers={"Authorization": value})
    assert r.status_code == 401, r.text
    assert r.json() == {"detail": "basic authentication required"}
    assert r.headers["www-authenticate"].startswith("Basic")


def test_right_basic_auth_still_passes(client):
    auth = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
    assert client.get("/health", headers=auth).status_code == 200


def test_webhook_with_a_trailing_slash_is_the_same_route_not_a_redirect(client):
    r = client.post("/webhook/", json=CREATED, headers={**HOOK, "Host": "evil.example"},
                    follow_redirects=False)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert "location" not in r.headers
    other = client.post("/predict/", json=PREDICT, follow_redirects=False)
    assert other.status_code == 404 and other.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("body, loc", [
    ({"tasks": [{"data": {"image": "x"}, "id": 2 ** 70}], "label_config": 5}, ["label_config"]),
    ({"tasks": [{"data": {"d": deep(300)}}], "label_config": None}, ["label_config"]),
    ({"tasks": [{"data": []}]}, ["tasks", 0, "data"]),
    ({"tasks": {}}, ["tasks"]),
    ({"tasks": [], "project": "0\u00b9"}, ["label_config"]),     # a digit int() refuses
])
def test_bad_predict_bodies_get_422_naming_the_field(client, body, loc):
    auth = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
    r = client.post("/predict", content=json.dumps(body),
                    headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", *loc]


def test_an_unknown_route_or_method_is_json(client):
    assert client.get("/nope").json() == {"detail": "Not Found"}
    r = client.get("/webhook")
    assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}
