"""The bridge against a real Label Studio 1.23.2: predictions in, annotations out, reconciliation.

Label Studio runs from `.venv-ls` (see lsharness.py); labelbridge runs as a process started with
the command line docker-compose gives it; Labelbox is the strict stand-in the real SDK talks to.
Every scenario asserts on what Label Studio stored and on what the stand-in received.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from labelbridge.model.ids import LABELBRIDGE_NAMESPACE

from tests.helpers import ROOT, bbox, checklist, export_row, radio, text, wait_for
from tests.lbstandin import Feature, LabelboxStandIn, Option, new_cuid
from tests.procs import free_port, start_process, stop_process

CONFIG = (ROOT / "configs" / "image-detection.xml").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
TOKEN = "e2e-webhook-secret"
BASIC = ("label-studio", "ml-secret")
PROJECT = new_cuid()
RUN = new_cuid()
W, H = 800, 600
ROWS = 8
PER_BOX = [Feature("occluded", "radio", options=["yes", "no"]),
           Feature("attributes", "checklist", options=["parked", "moving", "blurred"]),
           Feature("note", "text")]
ONTOLOGY = [Feature("Car", "bbox", nested=PER_BOX), Feature("Person", "bbox", nested=PER_BOX),
            Feature("Bicycle", "bbox", nested=PER_BOX),
            Feature("weather", "radio", options=[
                "sunny", Option("rainy", nested=[Feature("rain_intensity", "radio",
                                                         options=["light", "heavy"])]), "night"]),
            Feature("drives", "relationship"), Feature("next_to", "relationship")]


def u5(region_id: str) -> str:
    return str(uuid.uuid5(LABELBRIDGE_NAMESPACE, region_id))


def row(i: int) -> dict:
    """Labelbox model-run predictions for image i: a car and a person with per-box answers,
    a relationship, and weather with a nested question."""
    car = bbox(f"ccar{i:021d}", "Car", 40.0 + i, 60.0, 200.5, 120.25, confidence=0.9,
               classifications=[radio(f"cocc{i:020d}", "occluded", "yes"),
                                checklist(f"catt{i:020d}", "attributes", ["parked", "blurred"]),
                                text(f"cnot{i:020d}", "note", f"car {i}")])
    person = bbox(f"cper{i:021d}", "Person", 500.0, 100.0 + i, 80.0, 240.0, confidence=0.7,
                  classifications=[radio(f"cpoc{i:020d}", "occluded", "no")])
    weather = radio(f"cwea{i:021d}", "weather", "rainy",
                    [radio(f"crai{i:021d}", "rain_intensity", "heavy")])
    rel = {"feature_id": f"crel{i:021d}", "name": "drives", "unidirectional": True,
           "source": person["feature_id"], "target": car["feature_id"]}
    r = export_row([car, person], [weather], [rel], width=W, height=H,
                   data_row_id=f"cdr{i:022d}", global_key=f"e2e-img-{i}.jpg",
                   row_data=f"http://127.0.0.1:9/e2e-img-{i}.jpg",
                   runs={RUN: {"name": "e2e", "predictions": [{"annotations": {
                       "objects": [car, person], "classifications": [weather],
                       "relationships": [rel]}}]}})
    r["media_attributes"]["mime_type"] = "image/jpeg"
    return r


class Bridge:
    """labelbridge as docker-compose runs it (same command line), on this machine."""

    def __init__(self, tmp: Path, standin: LabelboxStandIn, ls) -> None:
        command = COMPOSE["services"]["labelbridge"]["command"]
        assert command == ["labelbridge", "serve"]
        self.cmd = [str(Path(sys.executable).parent / command[0]), *command[1:]]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        export = tmp / "export.ndjson"
        export.write_bytes(b"".join(orjson.dumps(row(i)) + b"\n" for i in range(ROWS)))
        self.env = {**os.environ,
                    "LABELBRIDGE_EXPORT": str(export), "LABELBRIDGE_DATA_DIR": str(tmp / "var"),
                    "LABELBRIDGE_HOST": "127.0.0.1", "LABELBRIDGE_PORT": str(self.port),
                    "LABELBRIDGE_WEBHOOK_TOKEN": TOKEN, "BASIC_AUTH_USER": BASIC[0],
                    "BASIC_AUTH_PASS": BASIC[1], "LABELBOX_API_KEY": "lb-key",
                    "LABELBOX_PROJECT_ID": PROJECT, "LABELBOX_ENDPOINT": standin.endpoint,
                    "LABELBOX_REST_ENDPOINT": standin.rest_endpoint,
                    "LABELBOX_APP_URL": standin.app_url, "LABEL_STUDIO_URL": ls.url,
                    "LABEL_STUDIO_API_KEY": ls.token, "LABELBRIDGE_RECONCILE_INTERVAL": "0",
                    "LABELBRIDGE_BATCH_MAX_WAIT": "0.3", "LABELBRIDGE_IMPORT_POLL_INTERVAL": "0.1",
                    "LABELBRIDGE_RETRY_BASE": "0.2", "LABELBRIDGE_RETRY_MAX": "1"}
        self.log = tmp / "labelbridge.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        auth = httpx.BasicAuth(*BASIC)._auth_header
        self.proc = start_process(self.cmd, self.env, self.url + "/health", self.log,
                                  headers={"Authorization": auth})

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def cli(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([self.cmd[0], *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=120)

    def outbox(self) -> dict:
        r = self.cli("outbox", "status", "--json")
        assert r.returncode == 0, r.stderr
        return orjson.loads(r.stdout)


@pytest.fixture(scope="module")
def world(label_studio, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bridge")
    standin = LabelboxStandIn(api_key="lb-key").start()
    standin.add_project(PROJECT, name="e2e", ontology=ONTOLOGY)
    standin.add_data_rows(PROJECT, [{"id": f"cdr{i:022d}", "global_key": f"e2e-img-{i}.jpg",
                                     "row_data": f"http://127.0.0.1:9/e2e-img-{i}.jpg",
                                     "media_attributes": {"width": W, "height": H}}
                                    for i in range(ROWS)])
    bridge = Bridge(tmp, standin, label_studio)
    bridge.start()
    yield label_studio, standin, bridge
    bridge.stop()
    standin.stop()


@pytest.fixture()
def project(world, ls_project):
    """A Label Studio project with tasks naming their data rows, wired by `labelbridge connect`."""
    ls, standin, bridge = world

    def make(rows: range):
        p = ls_project(CONFIG)
        created = ls.client().projects.import_tasks(
            id=p.id, return_task_ids=True,
            request=[{"data": {"image": f"http://127.0.0.1:9/e2e-img-{i}.jpg",
                               "global_key": f"e2e-img-{i}.jpg"}} for i in rows])
        r = bridge.cli("connect", "--ls-url", ls.url, "--ls-token", ls.token, "--ls-project",
                       str(p.id), "--backend-url", bridge.url)
        assert r.returncode == 0, r.stderr
        return p.id, dict(zip(rows, created.task_ids))
    return make


def dm_action(ls, action: str, project_id: int, **extra) -> dict:
    r = ls.api("POST", f"/api/dm/actions?id={action}&project={project_id}",
               json={"selectedItems": {"all": True, "excluded": []}, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def predictions(ls, task_id: int) -> list[dict]:
    r = ls.api("GET", f"/api/predictions?task={task_id}")
    assert r.status_code == 200, r.text
    return r.json()


def annotations(ls, task_id: int) -> list[dict]:
    r = ls.api("GET", f"/api/tasks/{task_id}/annotations/")
    assert r.status_code == 200, r.text
    return r.json()


def labels_of(standin, global_key: str) -> list[dict]:
    """The data row's labels, features named (the bridge sends them by schemaId)."""
    return [standin.named(PROJECT, label) for label in standin.labels(PROJECT)
            if label["global_key"] == global_key]


def successful_lines(standin, uuid_: str) -> int:
    return sum(1 for imp in standin.imports(PROJECT)
               for line, st in zip(imp["lines"], imp["statuses"] or [])
               if line.get("uuid") == uuid_ and st.get("status") == "SUCCESS")


# ----- scenarios ----------------------------------------------------------------------------

def test_connect_wires_backend_and_webhook_and_is_idempotent(world, project):
    ls, _, bridge = world
    pid, _ = project(range(0, 1))
    def wiring():  # listing backends re-runs health/setup, which touches updated_at
        return [(b["id"], b["url"], b["auth_method"], b["basic_auth_user"], b["title"])
                for b in ls.api("GET", f"/api/ml?project={pid}").json()]
    backends = wiring()
    assert [b[1:] for b in backends] == [(bridge.url, "BASIC_AUTH", BASIC[0], "labelbridge")]
    (backend,) = ls.api("GET", f"/api/ml?project={pid}").json()
    # non-interactive: Label Studio offers no Auto-Annotation, whose context the bridge ignores
    assert backend["state"] == "CO" and backend["is_interactive"] is False
    hooks = [h for h in ls.api("GET", f"/api/webhooks?project={pid}").json()
             if h["url"] == bridge.url + "/webhook"]
    assert len(hooks) == 1 and hooks[0]["headers"] == {"X-Labelbridge-Token": TOKEN}
    again = bridge.cli("connect", "--ls-url", ls.url, "--ls-token", ls.token, "--ls-project",
                       str(pid), "--backend-url", bridge.url)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert wiring() == backends
    assert [h for h in ls.api("GET", f"/api/webhooks?project={pid}").json()
            if h["url"] == bridge.url + "/webhook"] == hooks


def test_retrieve_predictions_stores_labelbox_ids_geometry_and_model_version(world, project):
    ls, _, _ = world
    pid, tasks = project(range(0, 3))
    dm_action(ls, "retrieve_tasks_predictions", pid)
    for i, task_id in tasks.items():
        (pred,) = predictions(ls, task_id)
        assert pred["model_version"] == RUN
        result = pred["result"]
        car = next(r for r in result if r.get("type") == "rectanglelabels"
                   and r["value"]["rectanglelabels"] == ["Car"])
        assert car["id"] == f"ccar{i:021d}"
        assert car["value"]["x"] == pytest.approx((40.0 + i) / W * 100, abs=1e-9)
        assert car["value"]["width"] == pytest.approx(200.5 / W * 100, abs=1e-9)
        assert {r["from_name"] for r in result if r.get("id") == car["id"]} == {
            "label", "occluded", "attributes", "note"}
        rel = next(r for r in result if r.get("type") == "relation")
        assert (rel["from_id"], rel["to_id"], rel["labels"]) == (
            f"cper{i:021d}", f"ccar{i:021d}", ["drives"])
        assert any(r.get("from_name") == "rain_intensity" and r["id"] == f"crai{i:021d}"
                   for r in result)
    dm_action(ls, "retrieve_tasks_predictions", pid)       # same model version: not asked again
    assert all(len(predictions(ls, t)) == 1 for t in tasks.values())


def test_annotations_from_predictions_keep_ids_and_reach_labelbox(world, project):
    ls, standin, _ = world
    pid, tasks = project(range(3, 5))
    dm_action(ls, "retrieve_tasks_predictions", pid)
    dm_action(ls, "predictions_to_annotations", pid, model_version=RUN)   # bulk webhook
    for i, task_id in tasks.items():
        (ann,) = annotations(ls, task_id)
        (pred,) = predictions(ls, task_id)
        assert [r.get("id") for r in ann["result"]] == [r.get("id") for r in pred["result"]]
        (label,) = wait_for(lambda: labels_of(standin, f"e2e-img-{i}.jpg"), what="label")
        lines = {line["uuid"]: line for line in label["annotations"]}
        car = lines[u5(f"ccar{i:021d}")]
        assert car["bbox"] == pytest.approx({"left": 40.0 + i, "top": 60.0, "width": 200.5,
                                             "height": 120.25}, abs=1e-6)
        occluded, attributes, note = car["classifications"]
        assert occluded == {"name": "occluded", "answer": {"name": "yes"}}
        assert [a["name"] for a in attributes["answer"]] == ["parked", "blurred"]
        assert note == {"name": "note", "answer": f"car {i}"}
        assert lines[u5(f"cwea{i:021d}")]["answer"]["classifications"][0]["answer"] == {
            "name": "heavy"}
        assert u5(f"cper{i:021d}") in lines


def test_update_delete_and_skip(world, project):
    ls, standin, bridge = world
    pid, tasks = project(range(5, 7))
    dm_action(ls, "retrieve_tasks_predictions", pid)
    (pred,) = predictions(ls, tasks[5])
    created = ls.client().annotations.create(id=tasks[5], result=pred["result"],
                                             parent_prediction=pred["id"])
    wait_for(lambda: labels_of(standin, "e2e-img-5.jpg"), what="first label")
    moved = copy.deepcopy(pred["result"])
    for r in moved:
        if r.get("id") == "ccar000000000000000000005":
            r["value"]["x"] = 25.0
            if r["from_name"] == "occluded":
                r["value"]["choices"] = ["no"]
            if r["from_name"] == "attributes":
                r["value"]["choices"] = []
    r = ls.api("PATCH", f"/api/annotations/{created.id}/", json={"result": moved})
    assert r.status_code == 200, r.text

    def updated():
        labels = labels_of(standin, "e2e-img-5.jpg")
        if len(labels) != 1:
            return None
        car = next(l for l in labels[0]["annotations"]
                   if l["uuid"] == u5("ccar000000000000000000005"))
        return car if car["bbox"]["left"] == pytest.approx(0.25 * W) else None
    car = wait_for(updated, what="updated label")
    assert car["classifications"][0]["answer"] == {"name": "no"}

    assert ls.api("DELETE", f"/api/annotations/{created.id}/").status_code == 204
    wait_for(lambda: labels_of(standin, "e2e-img-5.jpg") == [], what="label removed")

    before = len(standin.imports(PROJECT))
    skip = ls.api("POST", f"/api/tasks/{tasks[6]}/annotations/",
                  json={"result": [], "was_cancelled": True})
    assert skip.status_code == 201, skip.text
    time.sleep(1.5)
    assert labels_of(standin, "e2e-img-6.jpg") == []
    assert len(standin.imports(PROJECT)) == before
    assert bridge.outbox()["counts"]["ignored"] >= 1


def test_interactive_only_when_asked(world, project):
    ls, _, bridge = world
    pid, _ = project(range(0, 1))
    args = ("connect", "--ls-url", ls.url, "--ls-token", ls.token, "--ls-project", str(pid),
            "--backend-url", bridge.url)
    on = bridge.cli(*args, "--interactive")
    assert on.returncode == 0 and "interactive on" in on.stdout, on.stderr
    assert ls.api("GET", f"/api/ml?project={pid}").json()[0]["is_interactive"] is True
    off = bridge.cli(*args)
    assert off.returncode == 0 and "interactive off" in off.stdout, off.stderr
    assert ls.api("GET", f"/api/ml?project={pid}").json()[0]["is_interactive"] is False


def test_connect_all_projects_puts_a_new_token_on_every_connected_project(world, project,
                                                                           ls_project):
    ls, _, bridge = world
    wired = [project(range(0, 1))[0], project(range(1, 2))[0]]
    alone = ls_project(CONFIG).id
    r = bridge.cli("connect", "--ls-url", ls.url, "--ls-token", ls.token, "--all-projects",
                   "--backend-url", bridge.url, env={"LABELBRIDGE_WEBHOOK_TOKEN": "rotated"})
    assert r.returncode == 0, r.stderr
    for pid in wired:
        (hook,) = [h for h in ls.api("GET", f"/api/webhooks?project={pid}").json()
                   if h["url"] == bridge.url + "/webhook"]
        assert hook["headers"] == {"X-Labelbridge-Token": "rotated"}
    assert f"project {alone}: not connected to {bridge.url}, left alone" in r.stdout
    assert ls.api("GET", f"/api/ml?project={alone}").json() == []
    both = bridge.cli("connect", "--all-projects", "--ls-project", str(alone))
    assert both.returncode == 2 and "not both" in both.stderr
    for pid in wired:   # back to the token the running bridge checks
        assert bridge.cli("connect", "--ls-project", str(pid), "--backend-url",
                          bridge.url).returncode == 0


def test_bridge_down_then_reconcile_delivers_everything_once(world, project):
    ls, standin, bridge = world
    pid, tasks = project(range(0, 8))
    dm_action(ls, "retrieve_tasks_predictions", pid)
    (pred,) = predictions(ls, tasks[7])
    kept = ls.client().annotations.create(id=tasks[7], result=pred["result"])
    wait_for(lambda: labels_of(standin, "e2e-img-7.jpg"), what="label before the outage")

    bridge.stop()
    made = {}
    for i in (1, 2):
        (pred,) = predictions(ls, tasks[i])
        made[i] = ls.client().annotations.create(id=tasks[i], result=pred["result"]).id
    assert ls.api("DELETE", f"/api/annotations/{kept.id}/").status_code == 204
    bridge.start()

    r = bridge.cli("reconcile", "--ls-project", str(pid))
    assert r.returncode == 0, r.stderr
    assert "queued 2 annotation(s) and 1 deletion(s)" in r.stdout     # a result: stdout
    assert "HTTP Request" not in r.stderr                             # no library chatter
    for i in (1, 2):
        uuid_ = u5(f"ccar{i:021d}")
        wait_for(lambda: successful_lines(standin, uuid_) >= 1, what=f"annotation {i}")
    wait_for(lambda: labels_of(standin, "e2e-img-7.jpg") == [], what="deletion reconciled")

    again = bridge.cli("reconcile", "--ls-project", str(pid))
    assert "queued 0 annotation(s) and 0 deletion(s); 2 already known" in again.stdout
    time.sleep(1.0)
    for i in (1, 2):
        assert successful_lines(standin, u5(f"ccar{i:021d}")) == 1   # exactly once


def test_wrong_webhook_token_is_refused_and_nothing_is_queued(world, ls_project):
    ls, _, bridge = world
    direct = httpx.post(bridge.url + "/webhook", json={"action": "ANNOTATION_CREATED"},
                        headers={"X-Labelbridge-Token": "wrong"})
    assert direct.status_code == 401
    p = ls_project(CONFIG)                       # not connected: only a badly configured hook
    (task_id,) = ls.client().projects.import_tasks(
        id=p.id, return_task_ids=True,
        request=[{"data": {"image": "http://127.0.0.1:9/x.jpg", "global_key": "e2e-img-0.jpg"}}]
    ).task_ids
    hook = ls.client().webhooks.create(project=p.id, url=bridge.url + "/webhook",
                                       headers={"X-Labelbridge-Token": "wrong"},
                                       send_payload=True, send_for_all_actions=True)
    def refused() -> int:
        metrics = httpx.get(bridge.url + "/status", auth=BASIC).json()
        return metrics["counters"].get("webhook_unauthorized", 0)
    before, refused_before = bridge.outbox()["events_total"], refused()
    ann = ls.client().annotations.create(id=task_id, result=[{
        "id": "wrongtok1", "from_name": "weather", "to_name": "image", "type": "choices",
        "value": {"choices": ["sunny"]}}])
    assert ann.id
    assert refused() > refused_before            # Label Studio did deliver, and was refused
    assert bridge.outbox()["events_total"] == before
    ls.api("DELETE", f"/api/webhooks/{hook.id}/")


def test_doctor_reads_label_studio_and_labelbox(world, project):
    ls, _, bridge = world
    pid, _ = project(range(0, 1))
    ok = bridge.cli("doctor", "--ls-project", str(pid), "--json")
    flags = bridge.cli("doctor", "--ls-url", ls.url, "--ls-token", ls.token, "--ls-project",
                       str(pid), "--json", env={"LABEL_STUDIO_URL": "", "LABEL_STUDIO_API_KEY": ""})
    assert flags.returncode == 0 and orjson.loads(flags.stdout) == orjson.loads(ok.stdout)
    report = orjson.loads(ok.stdout)
    assert ok.returncode == 0, report
    assert report["sources"]["label_config"].startswith(f"Label Studio project {pid}")
    denied = bridge.cli("doctor", "--ls-project", str(pid), "--json",
                        env={"LABEL_STUDIO_API_KEY": "not-a-token"})
    assert denied.returncode == 1
    assert [f["code"] for f in orjson.loads(denied.stdout)["findings"]] == ["remote-error"]


def test_what_docker_compose_describes_is_what_ran(world):
    ls, _, bridge = world
    service = COMPOSE["services"]["labelbridge"]
    assert bridge.proc is not None and bridge.proc.args[1:] == service["command"][1:]
    check = service["healthcheck"]["test"]
    assert check[:2] == ["CMD", "labelbridge"]
    probe = bridge.cli(*check[2:])
    assert probe.returncode == 0, probe.stderr
    ls_env = COMPOSE["services"]["label-studio"]["environment"]
    for name in ("LABEL_STUDIO_ML_BLOCK_LOCAL_IP", "LABEL_STUDIO_SSRF_PROTECTION_ENABLED",
                 "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"):
        assert ls.env[name] == ls_env[name]
    assert COMPOSE["services"]["label-studio"]["image"].endswith(":1.23.2")


def test_label_studio_stores_the_same_predictions_from_the_official_1_0_9_server(
        world, project, ls_project, tmp_path):
    """LabelboxModel in label-studio-ml 1.0.9 (.venv-lsml), started with labelbridge serve's
    own environment: Label Studio stores the predictions it stores from labelbridge. 1.0.9's
    /setup answers its own model version, so Label Studio asks it again on every retrieval."""
    from tests.lsml import harness

    ls, _, bridge = world
    if not harness.installed():
        pytest.fail(f"label-studio-ml 1.0.9 is missing from {harness.VENV}: "
                    f"{harness.INSTALL_HINT}", pytrace=False)
    rows = range(0, 2)
    pid, tasks = project(rows)                       # served by labelbridge itself
    dm_action(ls, "retrieve_tasks_predictions", pid)
    port = free_port()
    framework = harness.start_lsml(tmp_path / "framework", bridge.env, port)
    try:
        other = ls_project(CONFIG, title="label-studio-ml 1.0.9")
        created = ls.client().projects.import_tasks(
            id=other.id, return_task_ids=True,
            request=[{"data": {"image": f"http://127.0.0.1:9/e2e-img-{i}.jpg",
                               "global_key": f"e2e-img-{i}.jpg"}} for i in rows])
        ls.client().ml.create(project=other.id, url=f"http://127.0.0.1:{port}",
                              title="label-studio-ml 1.0.9")
        dm_action(ls, "retrieve_tasks_predictions", other.id)
        for i, task_id in zip(rows, created.task_ids):
            (theirs,) = predictions(ls, task_id)
            (ours,) = predictions(ls, tasks[i])
            assert theirs["model_version"] == ours["model_version"] == RUN
            assert theirs["result"] == ours["result"] and theirs["score"] == ours["score"]
        dm_action(ls, "retrieve_tasks_predictions", other.id)
        assert all(len(predictions(ls, t)) == 2 for t in created.task_ids)
    finally:
        stop_process(framework)
