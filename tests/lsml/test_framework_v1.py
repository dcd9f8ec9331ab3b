"""LabelboxModel inside the official label-studio-ml 1.0.9 server (``label-studio-ml init`` +
``start`` from ``.venv-lsml``), beside ``labelbridge serve`` on the same data dir, sent Label
Studio 1.23.2's real ``/setup``, ``/predict`` and ``/webhook`` bodies: the same predictions,
and every event in the outbox, and delivered, once."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pytest

from labelbridge.settings import env_names, load_settings

from tests.helpers import CAPTURED_RUN, capture, captured_task_export, wait_for
from tests.lsml.captures import FLOW, PREDICTS, SETUP, assert_labelbridge_results, canonical
from tests.procs import free_port, start_process, stop_process


@pytest.fixture(scope="module")
def servers(tmp_path_factory, lsml_env):
    tmp = tmp_path_factory.mktemp("lsml")
    captured_task_export(tmp / "export.ndjson")
    bridge_port, lsml_port = free_port(), free_port()
    settings = {"LABELBRIDGE_EXPORT": str(tmp / "export.ndjson"),
                "LABELBRIDGE_DATA_DIR": str(tmp / "var"), "LABELBRIDGE_PORT": str(bridge_port),
                "LABELBRIDGE_BATCH_MAX_WAIT": "0.2"}
    base = {k: v for k, v in os.environ.items() if k not in env_names()}
    bridge = start_process([sys.executable, "-m", "labelbridge", "serve"], {**base, **settings},
                           f"http://127.0.0.1:{bridge_port}/health", tmp / "serve.log")
    try:
        lsml = lsml_env.start_lsml(tmp / "framework", settings, lsml_port)
    except BaseException:
        stop_process(bridge)
        raise
    yield (f"http://127.0.0.1:{bridge_port}", f"http://127.0.0.1:{lsml_port}",
           load_settings(**settings))
    stop_process(lsml)
    stop_process(bridge)


def outbox(bridge: str) -> dict:
    return httpx.get(bridge + "/status").json()["outbox"]


def test_setup_answers_the_frameworks_own_model_version(servers):
    bridge, lsml, _ = servers
    r = httpx.post(lsml + "/setup", json=capture(SETUP))
    # 1.0.9 answers the version of its model wrapper, never the model's (see the README)
    assert r.status_code == 200 and r.json() == {"model_version": "INITIAL"}
    assert httpx.post(bridge + "/setup", json=capture(SETUP)
                      ).json() == {"model_version": CAPTURED_RUN}


@pytest.mark.parametrize("name", PREDICTS)
def test_predictions_equal_labelbridges_own(servers, name):
    bridge, lsml, _ = servers
    body = capture(name)
    assert httpx.post(lsml + "/setup", json=capture(SETUP)
                      ).status_code == 200   # 1.0.9 refuses /predict before a /setup
    ours = httpx.post(bridge + "/predict", json=body)
    theirs = httpx.post(lsml + "/predict", json=body)
    assert ours.status_code == 200 and theirs.status_code == 200, theirs.text
    assert canonical(theirs.json()["results"]) == canonical(ours.json()["results"])
    assert_labelbridge_results(body, ours.json()["results"], CAPTURED_RUN)


def test_every_event_reaches_the_outbox_and_is_delivered_once(servers):
    bridge, lsml, settings = servers
    created = capture(FLOW + "ml-auto-webhook_ANNOTATION_CREATED.json")
    updated = capture(FLOW + "ml-auto-webhook_ANNOTATION_UPDATED.json")
    deleted = capture(FLOW + "ml-auto-webhook_ANNOTATIONS_DELETED.json")
    before = outbox(bridge)
    assert before["events_total"] == 0

    # created: the framework first (a forked process calls fit), then labelbridge's /webhook
    assert httpx.post(lsml + "/webhook", json=created).status_code == 201
    wait_for(lambda: outbox(bridge)["events_total"] == 1, 30, "fit's event in the outbox")
    r = httpx.post(bridge + "/webhook",
                   json=capture(FLOW + "project-webhook_ANNOTATION_CREATED.json"))
    assert (r.json()["accepted"], r.json()["duplicates"]) == (0, 1)
    wait_for(lambda: outbox(bridge)["counts"]["delivered"] == 1, 30, "created delivered")

    # updated: labelbridge's /webhook first, then the framework
    r = httpx.post(bridge + "/webhook",
                   json=capture(FLOW + "project-webhook_ANNOTATION_UPDATED.json"))
    assert (r.json()["accepted"], r.json()["duplicates"]) == (1, 0)
    assert httpx.post(lsml + "/webhook", json=updated).status_code == 201
    wait_for(lambda: outbox(bridge)["duplicates_total"] == 2, 30, "fit's duplicate counted")
    wait_for(lambda: outbox(bridge)["counts"]["delivered"] == 2, 30, "updated delivered")

    # deleted (ids only) and an action labelbridge ignores: the framework alone
    assert httpx.post(lsml + "/webhook", json=deleted).status_code == 201
    training = capture(FLOW + "ml-backend_POST-webhook_START_TRAINING.json")
    assert httpx.post(lsml + "/webhook", json=training).status_code == 201
    wait_for(lambda: outbox(bridge)["counts"]["delivered"] == 3, 30, "deletion delivered")
    status = outbox(bridge)
    assert status["events_total"] == 3 and status["rejected"] == 0

    sink = Path(settings.file_sink_dir)
    uuids = [json.loads(line)["uuid"] for f in sorted(sink.glob("*.ndjson"))
             if f.name != "removals.ndjson" for line in f.read_text().splitlines()]
    assert uuids and all(uuids.count(u) == 2 for u in uuids)   # each version once
    assert len((sink / "removals.ndjson").read_text().splitlines()) == 1
