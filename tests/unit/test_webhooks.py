"""Label Studio webhook bodies (as Label Studio 1.23.2 sent them) -> outbox changes."""

import copy

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from labelbridge.labelstudio import redact, webhooks
from labelbridge.model.times import parse_timestamp

from tests.helpers import capture

CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")


def test_annotation_created_becomes_one_upsert_without_secrets():
    parsed = webhooks.parse(CREATED)
    (change,) = parsed.changes
    assert (change.kind, change.annotation_id, change.task_id, change.project_id) == \
        ("upsert", 6, 14, 1)
    assert change.updated_at == CREATED["annotation"]["updated_at"]
    stored = webhooks.decode(change.payload)
    assert stored.annotation["result"] == CREATED["annotation"]["result"]
    assert stored.task == {"id": 14, "data": CREATED["task"]["data"]}
    assert stored.label_config_hash == webhooks.label_config_hash(
        CREATED["project"]["label_config"])
    assert b"token" not in change.payload and b"task_data_password" not in change.payload
    assert parsed.label_config == CREATED["project"]["label_config"]


def test_update_and_both_webhook_senders_give_the_same_change():
    auto = webhooks.parse(capture("e2e-flow/ml-auto-webhook_ANNOTATION_UPDATED.json"))
    project = webhooks.parse(capture("e2e-flow/project-webhook_ANNOTATION_UPDATED.json"))
    assert auto.changes == project.changes   # same event twice: the outbox dedupes it


def test_bulk_created_is_a_list_matched_to_tasks_by_id():
    body = copy.deepcopy(CREATED)
    second = dict(body["annotation"], id=7, task=15)
    body.update(action="ANNOTATIONS_CREATED", annotation=[body["annotation"], second],
                task=[body["task"], dict(body["task"], id=15, data={"image": "http://x/2.jpg"})])
    parsed = webhooks.parse(body)
    assert [(c.annotation_id, c.task_id) for c in parsed.changes] == [(6, 14), (7, 15)]
    assert webhooks.decode(parsed.changes[1].payload).task["data"] == {"image": "http://x/2.jpg"}


def test_deleted_carries_ids_only():
    parsed = webhooks.parse(capture("e2e-flow/ml-auto-webhook_ANNOTATIONS_DELETED.json"))
    assert [(c.kind, c.annotation_id, c.task_id) for c in parsed.changes] == [("delete", 1, None)]


def test_skipped_task_is_ignored_with_a_reason():
    body = copy.deepcopy(CREATED)
    body["annotation"].update(was_cancelled=True, result=[])
    (change,) = webhooks.parse(body).changes
    assert change.kind == "ignored" and "skipped" in change.reason and change.payload == b""


@pytest.mark.parametrize("name", ["basic-auth-flow/ml-auto-webhook_TASKS_CREATED.json",
                                  "basic-auth-flow/ml-auto-webhook_PROJECT_UPDATED.json",
                                  "basic-auth-flow/ml-backend_POST-webhook_START_TRAINING.json",
                                  "e2e-flow/ml-auto-webhook_TASKS_DELETED.json"])
def test_other_actions_are_ignored(name):
    parsed = webhooks.parse(capture(name))
    assert parsed.changes == [] and parsed.ignored_reason


@pytest.mark.parametrize("mutate, loc", [
    (lambda b: b.pop("action"), ["action"]),
    (lambda b: b["annotation"].pop("id"), ["annotation", "id"]),
    (lambda b: b["annotation"].update(id="6"), ["annotation", "id"]),
    (lambda b: b["annotation"].update(result={"x": 1}), ["annotation", "result"]),
    (lambda b: b["annotation"].update(result=[1]), ["annotation", "result", 0]),
    (lambda b: b["annotation"].pop("updated_at") and b["annotation"].pop("created_at"),
     ["annotation", "updated_at"]),
    (lambda b: b.pop("task"), ["task"]),
    (lambda b: b["task"].update(data="x"), ["task", "data"]),
    (lambda b: b["project"].pop("label_config"), ["project", "label_config"]),
    (lambda b: b["project"].update(id="one"), ["project", "id"]),
])
def test_malformed_bodies_name_the_field(mutate, loc):
    body = copy.deepcopy(CREATED)
    mutate(body)
    with pytest.raises(webhooks.WebhookError) as exc:
        webhooks.parse(body)
    assert exc.value.loc == loc
    assert exc.value.detail()[0]["loc"] == ["body", *loc]


def test_strip_secrets_keeps_the_rest():
    clean = redact.strip_secrets(CREATED)
    assert "token" not in clean["project"] and "task_data_password" not in clean["project"]
    assert clean["annotation"] == CREATED["annotation"]
    assert b"<redacted>" not in orjson.dumps(clean)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40),
                 st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
                 st.datetimes().map(lambda d: d.isoformat(timespec="microseconds") + "Z"),
                 st.from_regex(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)?\Z")))
@example("9999-12-31T23:59:59-01:00")   # after year 9999 in UTC
@example("0001-01-01T00:30:00+01:00")   # before year 1 in UTC
@example("9999-12-31T23:59:59+01:00")
@example(" 2026-11-22T12:00:00.1234567z ")
@example("2026-11-22")
def test_the_webhook_accepts_exactly_the_times_the_outbox_can_order(value):
    """One rule (``model.times``): no 500 after a 200, and no 422 for a time the outbox reads."""
    try:
        instant = parse_timestamp(value)
    except ValueError:
        instant = None
    body = copy.deepcopy(CREATED)
    body["annotation"]["updated_at"] = body["annotation"]["created_at"] = value
    try:
        (change,) = webhooks.parse(body).changes
    except webhooks.WebhookError as exc:
        assert exc.loc[-1] in ("created_at", "updated_at")
        assert instant is None, f"{value!r} is refused, yet the outbox orders it"
        return
    assert instant is not None
    assert parse_timestamp(change.updated_at) == parse_timestamp(change.created_at) == instant
