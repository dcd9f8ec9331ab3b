"""Secrets never stick: a refused webhook is kept without the project's secrets, whatever shape
its body has, and with allow-listed headers only (issue 16, defect 2)."""

from __future__ import annotations

import copy
import json

import orjson
import pytest
from fastapi.testclient import TestClient

from labelbridge.groundtruth.outbox import Outbox
from labelbridge.labelstudio import redact
from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import capture

TOKEN = "hook-secret-0123"
SECRETS = {"token": "PROJ-TOKEN-7f3a9c", "task_data_password": "DATA-PASS-55e1",
           "task_data_login": "DATA-LOGIN-91bd"}
HEADER_SECRETS = {"Authorization": "Basic QUxBRERJTjpTRVNBTUU=",
                  "Proxy-Authorization": "Bearer PROXY-SECRET-1d2c",
                  "X-Api-Key": "API-KEY-SECRET-77aa", "Cookie": "session=COOKIE-SECRET-e0e0",
                  "X-Custom-Secret": "CUSTOM-SECRET-4b4b"}


def body_with_secrets() -> dict:
    body = copy.deepcopy(capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json"))
    body["project"].update(SECRETS)
    body["annotation"]["result"] = "not a list"        # refused: 422
    return body


def raw_bodies() -> dict[str, bytes]:
    valid = orjson.dumps(body_with_secrets())
    at = valid.index(b'"task_data_password"')
    inside_token = valid.index(SECRETS["token"].encode()) + 4
    deep: object = {"project": {**SECRETS}}
    for _ in range(300):
        deep = [deep]
    return {
        "422, parsed": valid,
        "truncated after the secrets": valid[:at + 40],
        "truncated inside a secret": valid[:inside_token],
        "byte-order mark": b"\xef\xbb\xbf" + valid,
        "trailing bytes": valid + b"\x00trailing",
        "two objects": valid + valid,
        "escaped keys": valid.replace(b'"token"', b'"tok\\u0065n"'),
        "Python repr": repr(body_with_secrets()).encode(),
        "form encoded": ("action=ANNOTATION_CREATED&" + "&".join(
            f"{k}={v}" for k, v in SECRETS.items())).encode(),
        "secret as an object": valid.replace(b'"task_data_login":"DATA-LOGIN-91bd"',
                                             b'"task_data_login":{"v":"DATA-LOGIN-91bd"}')[:-3],
        "too deep to re-serialise": json.dumps({"action": 1, "x": deep}).encode(),
        "the service's own token in the body": valid.replace(b'"title":"', b'"title":"' +
                                                             TOKEN.encode()),
    }


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> list[tuple[str, int, dict]]:
    tmp = tmp_path_factory.mktemp("secrets")
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp, LABELBRIDGE_WEBHOOK_TOKEN=TOKEN,
                        LABELBRIDGE_DELIVERY_WORKER="off")
    answers = []
    with TestClient(create_app(settings)) as client:
        for name, raw in raw_bodies().items():
            r = client.post("/webhook", content=raw, headers={
                "X-Labelbridge-Token": TOKEN, "Content-Type": "application/json",
                **HEADER_SECRETS})
            answers.append((name, r.status_code))
    ob = Outbox(settings.outbox_db)
    rows = list(reversed(ob.rejected(100)))
    ob.close()
    return [(name, status, row) for (name, status), row in zip(answers, rows, strict=True)]


@pytest.mark.parametrize("name", list(raw_bodies()))
def test_a_refused_body_is_kept_without_secrets(kept, name):
    (status, row), = [(s, r) for n, s, r in kept if n == name]
    assert status in (400, 422)
    stored = row["body"] + orjson.dumps(row["headers"]) + row["reason"].encode()
    for secret in [*SECRETS.values(), *HEADER_SECRETS.values(), TOKEN, "QUxBRERJTjpTRVNBTUU"]:
        assert secret.encode() not in stored, f"{name}: {secret} kept"
    assert row["body"], f"{name}: nothing kept to inspect"


def test_only_allow_listed_headers_are_kept(kept):
    for name, _, row in kept:
        assert set(row["headers"]) <= redact.KEPT_HEADERS, name
        assert row["headers"]["content-type"] == "application/json"


def test_a_parsed_body_keeps_everything_but_the_secrets(kept):
    (row,) = [r for n, _, r in kept if n == "422, parsed"]
    stored = orjson.loads(row["body"])
    assert stored["annotation"]["result"] == "not a list"
    assert not set(SECRETS) & set(stored["project"])
    assert stored["project"]["label_config"].startswith("<View>")


def test_scrub_raw_replaces_values_and_cuts_at_undelimited_ones():
    raw = b'{"a": 1, "token": "x\\"y", "n": {"password": 5}, "login": {"deep": "v"}, "z": 2}'
    clean, cut = redact.scrub_raw(raw)
    assert clean == b'{"a": 1, "token": "<redacted>", "n": {"password": "<redacted>"}, ' \
                    b'"login": "<redacted>"' and cut


def test_strip_secrets_reaches_any_depth_and_keeps_the_rest():
    body = {"project": {"token": "t", "id": 1}, "params": {"password": "p", "login": None},
            "deep": [[{"access_token": "a", "keep": [1, {"x": 2}]}]]}
    assert redact.strip_secrets(body) == {"project": {"id": 1}, "params": {},
                                          "deep": [[{"keep": [1, {"x": 2}]}]]}


def test_a_body_handed_over_parsed_is_kept_however_deep_or_large_its_numbers():
    deep: list = []
    for _ in range(300):
        deep = [deep]
    body = {"project": {"token": "t"}, "big": 2 ** 70, "note": "key k3y-v4lue", "deep": deep}
    kept, note = redact.rejected_copy(None, body, ["k3y-v4lue"])
    doc = json.loads(kept)
    assert doc["big"] == 2 ** 70 and doc["note"] == "key <redacted>" and "project" in doc
    assert doc["project"] == {} and b"k3y-v4lue" not in kept
    depth, node = 0, doc["deep"]
    while isinstance(node, list):
        depth, node = depth + 1, node[0]
    assert node == redact.CUT and depth == redact.KEPT_DEPTH - 1
    assert note == f" [secrets scrubbed; nested deeper than {redact.KEPT_DEPTH} levels: cut there]"
    assert redact.rejected_copy(None, {"a": 1, "token": "t"}, []) == (b'{"a":1}', "")
