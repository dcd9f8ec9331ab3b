"""LabelboxModel under the label-studio-ml v2 contract, driven the way v2's server drives it.

v2 is on GitHub only (HumanSignal/label-studio-ml-backend), not on PyPI, so it cannot be
installed here. What stands in for it is only what its server and base class do to a model
class, read from its ``label_studio_ml/api.py`` and ``label_studio_ml/model.py`` (none of its
code): a new instance per request, built with ``project_id`` and ``label_config``; the base
constructor stores the label config and an initial model version in a per-project cache,
then calls ``setup()``; ``/setup`` answers the cached ``model_version``; ``/predict`` calls
``predict(tasks, context=..., **params)`` and answers a list as ``results``; ``/webhook``
passes only ``ANNOTATION_CREATED``/``UPDATED``/``DELETED`` and ``START_TRAINING`` to
``fit(event, data)``. Label Studio 1.23.2's captured bodies go in; labelbridge's own app,
on the same data dir, is the reference. label-studio-ml 1.0.9 runs for real in
test_framework_v1.py; this suite needs no .venv-lsml.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import types

import pytest
from fastapi.testclient import TestClient

from labelbridge.service.server import create_app
from labelbridge.settings import env_names, load_settings

from tests.helpers import CAPTURED_RUN, capture, captured_task_export
from tests.lsml.captures import FLOW, PREDICTS, SETUP, assert_labelbridge_results, canonical

TRAIN_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED",
                "START_TRAINING")


class V2Base:
    """v2's ``LabelStudioMLBase`` as a subclass meets it."""

    INITIAL_MODEL_VERSION = "0.0.1"
    cache: dict[tuple[str, str], str] = {}   # v2: SQLite in MODEL_DIR, (project_id, key)

    def __init__(self, project_id: str | None = None, label_config: str | None = None):
        self.project_id = project_id or ""
        if label_config is not None:
            self.set("label_config", label_config)
        if not self.get("model_version"):
            self.set("model_version", self.INITIAL_MODEL_VERSION)
        self.setup()

    def setup(self):
        pass

    def get(self, key: str):
        return self.cache.get((self.project_id, key))

    def set(self, key: str, value: str):
        if not isinstance(value, str):
            raise ValueError("Value must be a string")
        self.cache[(self.project_id, key)] = value

    @property
    def label_config(self):
        return self.get("label_config")

    def predict(self, tasks, context=None, **kwargs):
        return None

    def fit(self, event, data, **additional_params):
        return None


class V2Server:
    """The calls v2's Flask handlers make, with JSON in and out as on the wire."""

    def __init__(self, model_class):
        self.model_class = model_class

    def setup(self, body: dict) -> dict:
        model = self.model_class(project_id=body["project"].split(".", 1)[0],
                                 label_config=body.get("schema"))
        if body.get("extra_params"):
            model.set("extra_params", body["extra_params"])
        return {"model_version": model.get("model_version")}

    def predict(self, body: dict) -> dict:
        project = str(body.get("project"))
        params = dict(body.get("params", {}))
        context = params.pop("context", {})
        model = self.model_class(project_id=project.split(".", 1)[0] if project else None,
                                 label_config=body.get("label_config"))
        response = model.predict(body.get("tasks"), context=context, **params)
        assert isinstance(response, list)   # not a ModelResponse: passed on as it is
        return json.loads(json.dumps({"results": response}))

    def webhook(self, body: dict) -> tuple[int, dict]:
        data = dict(body)
        event = data.pop("action")
        if event not in TRAIN_EVENTS:
            return 200, {"status": "Unknown event"}
        model = self.model_class(str(data["project"]["id"]),
                                 label_config=data["project"]["label_config"])
        return 201, json.loads(json.dumps({"result": model.fit(event, data), "status": "ok"}))


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    captured_task_export(tmp_path / "export.ndjson")
    values = {"LABELBRIDGE_EXPORT": str(tmp_path / "export.ndjson"),
              "LABELBRIDGE_DATA_DIR": str(tmp_path / "var"),
              "LABELBRIDGE_DELIVERY_WORKER": "off"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return load_settings()


@pytest.fixture
def mlbackend(env, monkeypatch):
    """labelbridge.mlbackend imported fresh on top of the v2 stand-in."""
    package = types.ModuleType("label_studio_ml")
    model = types.ModuleType("label_studio_ml.model")
    model.LabelStudioMLBase = V2Base
    package.model = model
    monkeypatch.setitem(sys.modules, "label_studio_ml", package)
    monkeypatch.setitem(sys.modules, "label_studio_ml.model", model)
    monkeypatch.setattr(V2Base, "cache", {})
    monkeypatch.delitem(sys.modules, "labelbridge.mlbackend", raising=False)
    module = importlib.import_module("labelbridge.mlbackend")
    yield module
    if module._runtime is not None:
        module._runtime.stop()
    sys.modules.pop("labelbridge.mlbackend", None)


@pytest.fixture
def bridge(env):
    with TestClient(create_app(env)) as client:
        yield client


def test_setup_answers_labelbridges_model_version(mlbackend):
    server = V2Server(mlbackend.LabelboxModel)
    assert server.setup(capture(SETUP)) == {"model_version": CAPTURED_RUN}
    other = dict(capture(SETUP), project="7.1795349409")
    assert server.setup(other) == {"model_version": CAPTURED_RUN}


@pytest.mark.parametrize("name", PREDICTS)
def test_predictions_equal_labelbridges_own(mlbackend, bridge, name):
    body = capture(name)
    ours = bridge.post("/predict", json=body).json()["results"]
    theirs = V2Server(mlbackend.LabelboxModel).predict(body)["results"]
    assert canonical(theirs) == canonical(ours)
    assert_labelbridge_results(body, ours, CAPTURED_RUN)


def test_predict_uses_the_label_config_its_setup_stored(mlbackend, bridge):
    """v2 sends no label config with some requests: the instance reads the cached one."""
    server = V2Server(mlbackend.LabelboxModel)
    server.setup(capture(SETUP))
    body = capture(FLOW + "ml-backend_POST-predict_dm-retrieve-predictions.json")
    without = {k: v for k, v in body.items() if k != "label_config"}
    assert canonical(server.predict(without)["results"]) == \
        canonical(bridge.post("/predict", json=body).json()["results"])


def test_one_runtime_per_process_for_every_instance_and_thread(mlbackend):
    results = []
    threads = [threading.Thread(target=lambda: results.append(mlbackend.runtime()))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 1
    a, b = mlbackend.LabelboxModel("1"), mlbackend.LabelboxModel("1")
    assert a is not b and mlbackend.runtime() is results[0]


def test_an_event_from_both_webhooks_is_in_the_outbox_once(mlbackend, bridge, env):
    server = V2Server(mlbackend.LabelboxModel)
    status, answer = server.webhook(capture(FLOW + "ml-auto-webhook_ANNOTATION_CREATED.json"))
    assert status == 201 and answer["result"]["accepted"] == 1
    again = bridge.post("/webhook", json=capture(FLOW + "project-webhook_ANNOTATION_CREATED.json"))
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 1)

    first = bridge.post("/webhook", json=capture(FLOW + "project-webhook_ANNOTATION_UPDATED.json"))
    assert first.json()["accepted"] == 1
    status, answer = server.webhook(capture(FLOW + "ml-auto-webhook_ANNOTATION_UPDATED.json"))
    assert (answer["result"]["accepted"], answer["result"]["duplicates"]) == (0, 1)

    outbox = bridge.get("/status").json()["outbox"]
    assert outbox["events_total"] == 2 and outbox["duplicates_total"] == 2
    assert {i["source"] for i in mlbackend.runtime().outbox.items()} == {"mlbackend", "webhook"}


def test_v2_keeps_deletions_from_the_model_the_webhook_takes_them(mlbackend, bridge):
    deleted = capture(FLOW + "ml-auto-webhook_ANNOTATIONS_DELETED.json")
    assert V2Server(mlbackend.LabelboxModel).webhook(deleted) == (200, {"status": "Unknown event"})
    assert bridge.get("/status").json()["outbox"]["events_total"] == 0
    r = bridge.post("/webhook", json=capture(FLOW + "project-webhook_ANNOTATIONS_DELETED.json"))
    assert r.json()["accepted"] == 1


def test_fit_ignores_training_and_keeps_a_refused_body_without_secrets(mlbackend, bridge):
    server = V2Server(mlbackend.LabelboxModel)
    training = capture(FLOW + "ml-backend_POST-webhook_START_TRAINING.json")
    status, answer = server.webhook(training)
    assert status == 201 and answer["result"]["status"] == "ignored"
    broken = capture(FLOW + "ml-auto-webhook_ANNOTATION_CREATED.json")
    broken = {**broken, "annotation": {**broken["annotation"], "id": "one"},
              "project": {**broken["project"], "token": "s3cret-invite"}}
    status, answer = server.webhook(broken)
    assert answer["result"] == {"status": "rejected", "detail": [
        {"loc": ["body", "annotation", "id"], "msg": "must be an integer id",
         "type": "value_error"}]}
    outbox = mlbackend.runtime().outbox
    assert outbox.status()["rejected"] == 1 and outbox.status()["events_total"] == 0
    stored = outbox.rejected()[0]["body"]
    assert b"\"annotation\"" in stored and b"s3cret-invite" not in stored


def test_without_the_framework_the_import_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "label_studio_ml", None)
    monkeypatch.delitem(sys.modules, "labelbridge.mlbackend", raising=False)
    with pytest.raises(ImportError, match="label-studio-ml framework.*README"):
        importlib.import_module("labelbridge.mlbackend")
    sys.modules.pop("labelbridge.mlbackend", None)


def test_fit_keeps_a_refused_body_as_the_webhook_does(mlbackend, monkeypatch):
    """The route's scrubbing (``redact.rejected_copy``): the service's own secret values go
    wherever they appear, and a body too deep to write is kept cut, never an exception."""
    secret = "tok-s3cret-9876"
    monkeypatch.setenv("LABELBRIDGE_WEBHOOK_TOKEN", secret)
    body = capture(FLOW + "ml-auto-webhook_ANNOTATION_CREATED.json")
    body = {**body, "annotation": {**body["annotation"], "id": "one"},
            "task": {**body["task"], "data": {**body["task"]["data"], "note": f"is {secret}"}}}
    with TestClient(create_app(load_settings())) as bridge:
        r = bridge.post("/webhook", json=body, headers={"X-Labelbridge-Token": secret})
        assert r.status_code == 422
    status, answer = V2Server(mlbackend.LabelboxModel).webhook(body)
    assert answer["result"]["status"] == "rejected"
    deep: list = []
    for _ in range(400):            # deeper than orjson writes (and than /webhook stores)
        deep = [deep]
    nested = {**body, "task": {**body["task"], "data": {"image": "x", "deep": deep}}}
    status, answer = V2Server(mlbackend.LabelboxModel).webhook(nested)
    assert answer["result"]["status"] == "rejected"

    (cut, fit, route) = mlbackend.runtime().outbox.rejected()   # newest first
    assert json.loads(fit["body"]) == json.loads(route["body"])
    assert secret.encode() not in fit["body"]
    assert b"<redacted>" in fit["body"] and b"is <redacted>" in fit["body"]
    kept = json.loads(cut["body"])
    assert kept["task"]["data"]["image"] == "x" and kept["annotation"]["id"] == "one"
    assert "nested deeper than 200 levels: cut there" in cut["reason"]
