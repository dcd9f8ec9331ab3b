"""Serving the newest Labelbox model run to a real Label Studio 1.23.2: tasks predicted from run
1, annotations made from those predictions reported edit by edit, run 2 appearing, and
`labelbridge refresh-predictions` leaving exactly one prediction per unannotated task."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from labelbridge.labelstudio.api import LabelStudioApi, LabelStudioUnavailable
from labelbridge.labelstudio.mapping import Overrides
from labelbridge.predictions import versions
from labelbridge.predictions.ls_refresh import PredictionRefresher
from labelbridge.predictions.predictor import Predictor
from labelbridge.predictions.store import PredictionStore

from tests.helpers import ROOT, bbox, export_row, wait_for
from tests.lbstandin import Feature, LabelboxStandIn, Option, new_cuid
from tests.procs import free_port, start_process, stop_process

CONFIG = (ROOT / "configs" / "image-detection.xml").read_text()
TOKEN = "e2e-modelruns-secret"
BASIC = ("label-studio", "ml-secret")
PROJECT, MODEL = new_cuid(), new_cuid()
R1, R2 = new_cuid(), new_cuid()
W, H = 800, 600
IMAGES = 8
PER_BOX = [Feature("occluded", "radio", options=["yes", "no"]),
           Feature("attributes", "checklist", options=["parked", "moving", "blurred"]),
           Feature("note", "text")]
ONTOLOGY = [*(Feature(name, "bbox", nested=PER_BOX) for name in ("Car", "Person", "Bicycle")),
            Feature("weather", "radio", options=["sunny", Option("rainy", nested=[
                Feature("rain_intensity", "radio", options=["light", "heavy"])]), "night"]),
            Feature("drives", "relationship"), Feature("next_to", "relationship")]


def image(i: int) -> str:
    return f"mr-e2e-{i}.jpg"


def rows(run: str, tag: str, car_left: float) -> list[dict]:
    out = []
    for i in range(IMAGES):
        car = bbox(f"cc{tag}{i:022d}", "Car", car_left + i, 100.0, 200.0, 100.0, confidence=0.9)
        person = bbox(f"cp{tag}{i:022d}", "Person", 500.0, 200.0, 50.0, 150.0, confidence=0.8)
        row = export_row([car, person], width=W, height=H, data_row_id=f"cdrm{i:021d}",
                         global_key=image(i), row_data=f"http://127.0.0.1:9/{image(i)}",
                         runs={run: {"name": run, "predictions": [
                             {"annotations": {"objects": [car, person]}}]}})
        row["experiments"] = {MODEL: {"name": "detector", "runs": row["experiments"].popitem()[1]
                                      ["runs"]}}
        out.append(row)
    return out


class Bridge:
    def __init__(self, tmp: Path, standin: LabelboxStandIn, ls) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tmp / "var"
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("LABELBRIDGE_", "LABELBOX_", "LABEL_STUDIO_"))}
        self.env = {**clean, "LABELBRIDGE_DATA_DIR": str(self.data),
                    "LABELBRIDGE_PORT": str(self.port), "LABELBRIDGE_WEBHOOK_TOKEN": TOKEN,
                    "BASIC_AUTH_USER": BASIC[0], "BASIC_AUTH_PASS": BASIC[1],
                    "LABELBOX_API_KEY": "lb-key", "LABELBOX_PROJECT_ID": PROJECT,
                    "LABELBOX_MODEL_ID": MODEL, "LABELBOX_ENDPOINT": standin.endpoint,
                    "LABELBOX_REST_ENDPOINT": standin.rest_endpoint,
                    "LABELBOX_APP_URL": standin.app_url, "LABEL_STUDIO_URL": ls.url,
                    "LABEL_STUDIO_API_KEY": ls.token, "LABELBRIDGE_RECONCILE_INTERVAL": "0",
                    "LABELBRIDGE_REFRESH_INTERVAL": "1", "LABELBRIDGE_BATCH_MAX_WAIT": "0.3",
                    "LABELBRIDGE_IMPORT_POLL_INTERVAL": "0.1"}
        self.proc = start_process([sys.executable, "-m", "labelbridge", "serve"], self.env,
                                  self.url + "/health", tmp / "bridge.log", timeout=60,
                                  headers={"Authorization": httpx.BasicAuth(*BASIC)._auth_header})

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labelbridge", *args],
                              env={**self.env, "COLUMNS": "200"}, capture_output=True,
                              text=True, timeout=120)

    def setup(self) -> str:
        r = httpx.post(self.url + "/setup", json={"schema": CONFIG}, auth=BASIC, timeout=10)
        return r.json()["model_version"]


@pytest.fixture(scope="module")
def world(label_studio, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modelruns-e2e")
    standin = LabelboxStandIn(api_key="lb-key").start()
    standin.add_project(PROJECT, ontology=ONTOLOGY)
    standin.add_data_rows(PROJECT, [{"id": f"cdrm{i:021d}", "global_key": image(i),
                                     "row_data": f"http://127.0.0.1:9/{image(i)}",
                                     "media_attributes": {"width": W, "height": H}}
                                    for i in range(IMAGES)])
    standin.add_model(MODEL, name="detector")
    standin.add_model_run(MODEL, R1, "run-1", rows(R1, "a", 100.0),
                          created_at="2025-01-01T00:00:00.000Z")
    bridge = Bridge(tmp, standin, label_studio)
    ls = label_studio.client()
    project = ls.projects.create(title="model runs e2e", label_config=CONFIG)
    tasks = ls.projects.import_tasks(id=project.id, return_task_ids=True, request=[
        {"data": {"image": f"http://127.0.0.1:9/{image(i)}", "global_key": image(i)}}
        for i in range(6)]).task_ids
    r = bridge.cli("connect", "--ls-url", label_studio.url, "--ls-token", label_studio.token,
                   "--ls-project", str(project.id), "--backend-url", bridge.url)
    assert r.returncode == 0, r.stderr
    yield label_studio, standin, bridge, project.id, tasks
    label_studio.api("DELETE", f"/api/projects/{project.id}/")
    stop_process(bridge.proc)
    standin.stop()


def predictions(ls, task_id: int) -> list[dict]:
    return ls.api("GET", f"/api/predictions?task={task_id}").json()


def annotations(ls, task_id: int) -> list[dict]:
    return ls.api("GET", f"/api/tasks/{task_id}/annotations/").json()


def kept(items: list[dict]) -> list[tuple]:
    """What must not change of a task's predictions or annotations (not ``created_ago``)."""
    return [(x["id"], x.get("model_version"), x["result"], x.get("updated_at")) for x in items]


def region(result: list[dict], label: str) -> dict:
    return next(r for r in result if r["value"]["rectanglelabels"] == [label])


def test_tasks_are_predicted_from_run_1(world):
    ls, _, bridge, pid, tasks = world
    assert bridge.setup() == R1
    r = ls.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
               json={"selectedItems": {"all": True, "excluded": []}})
    assert r.status_code == 200, r.text
    for i, task_id in enumerate(tasks):
        (pred,) = predictions(ls, task_id)
        assert pred["model_version"] == R1
        assert region(pred["result"], "Car")["id"] == f"cca{i:022d}"


def test_the_report_counts_each_edit_of_a_prediction(world):
    ls, standin, bridge, _, tasks = world
    for i, task_id in enumerate(tasks[:5]):
        (pred,) = predictions(ls, task_id)
        result = copy.deepcopy(pred["result"])
        if i == 1:      # move the car 40 px right
            region(result, "Car")["value"]["x"] += 40 / W * 100
        elif i == 2:    # the person is a bicycle
            region(result, "Person")["value"]["rectanglelabels"] = ["Bicycle"]
        elif i == 3:    # no person there
            result.remove(region(result, "Person"))
        elif i == 4:    # a person the model missed
            result.append({"id": "byhand0001", "from_name": "label", "to_name": "image",
                           "type": "rectanglelabels", "original_width": W,
                           "original_height": H, "value": {"x": 1, "y": 1, "width": 5,
                                                           "height": 10, "rotation": 0,
                                                           "rectanglelabels": ["Person"]}})
        ls.client().annotations.create(id=task_id, result=result, parent_prediction=pred["id"])
    wait_for(lambda: len({lab["global_key"] for lab in standin.labels(PROJECT)}) == 5,
             timeout=60, what="five labels in Labelbox")

    def report() -> dict | None:
        r = bridge.cli("report", "--format", "json")
        doc = orjson.loads(r.stdout) if r.returncode == 0 else None
        return doc if doc and doc["annotations"] == 5 else None
    doc = wait_for(report, timeout=60, what="five annotations in the edit report")
    by_label = {row["label"]: row for row in doc["labels"]}
    car, person, total = by_label["Car"], by_label["Person"], doc["total"]
    # the car of task 1: 200x100 moved by 40 px: intersection 160*100 over union 24,000
    assert (car["predicted"], car["accepted"], car["moved"]) == (5, 4, 1)
    assert car["mean_iou_moved"] == pytest.approx(16000 / 24000, abs=1e-6)
    assert (person["predicted"], person["accepted"], person["relabelled"], person["deleted"],
            person["added"], person["acceptance_rate"]) == (5, 3, 1, 1, 1, 0.6)
    assert (total["predicted"], total["accepted"], total["acceptance_rate"]) == (10, 7, 0.7)
    metrics = httpx.get(bridge.url + "/status", auth=BASIC).json()["edits"]
    assert (metrics["annotations"], metrics["moved"], metrics["added"]) == (5, 1, 1)


def test_run_2_appears_and_refresh_predictions_leaves_one_prediction_per_unannotated_task(
        world):
    ls, standin, bridge, pid, tasks = world
    annotated = {t: (kept(predictions(ls, t)), kept(annotations(ls, t))) for t in tasks[:5]}
    standin.add_model_run(MODEL, R2, "run-2", rows(R2, "b", 300.0))
    wait_for(lambda: bridge.setup() == R2, timeout=60, what="run 2 served")
    (new_task,) = ls.client().projects.import_tasks(id=pid, return_task_ids=True, request=[
        {"data": {"image": f"http://127.0.0.1:9/{image(6)}", "global_key": image(6)}}]).task_ids

    dry = bridge.cli("refresh-predictions", "--project", str(pid), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    said = " ".join(dry.stdout.split())
    assert "would set the project's model version" in said
    assert "7 tasks: would remove 1 and write 2 predictions" in said, said
    assert [p["model_version"] for p in predictions(ls, tasks[5])] == [R1]   # unchanged
    assert predictions(ls, new_task) == []

    done = bridge.cli("refresh-predictions", "--project", str(pid))
    assert done.returncode == 0, done.stderr
    assert "5 with annotations left alone" in " ".join(done.stdout.split())
    for i, task_id in ((5, tasks[5]), (6, new_task)):
        (pred,) = predictions(ls, task_id)
        assert pred["model_version"] == R2
        assert region(pred["result"], "Car")["id"] == f"ccb{i:022d}"
    for task_id, (preds, anns) in annotated.items():
        assert kept(predictions(ls, task_id)) == preds and kept(annotations(ls, task_id)) == anns
    assert ls.api("GET", f"/api/projects/{pid}/").json()["model_version"] == R2
    again = bridge.cli("refresh-predictions", "--ls-project", str(pid))
    assert "remove 0 and write 0" in " ".join(again.stdout.split())

    everything = bridge.cli("refresh-predictions", "--ls-project", str(pid),
                            "--include-annotated")
    assert everything.returncode == 0, everything.stderr
    for task_id, (_, anns) in annotated.items():
        assert [p["model_version"] for p in predictions(ls, task_id)] == [R2]
        assert kept(annotations(ls, task_id)) == anns   # annotations are never touched


class FailingOnce(LabelStudioApi):
    """The real API, with the second page's write failing as a network error would."""

    calls = 0

    def import_predictions(self, project_id, predictions):
        FailingOnce.calls += 1
        if FailingOnce.calls == 2:
            raise LabelStudioUnavailable("Label Studio at ... is unreachable: simulated")
        super().import_predictions(project_id, predictions)


def test_an_interrupted_refresh_resumes_after_the_last_page_it_finished(world, tmp_path):
    ls, _, bridge, _, _ = world
    project = ls.client().projects.create(title="resume", label_config=CONFIG)
    ids = ls.client().projects.import_tasks(id=project.id, return_task_ids=True, request=[
        {"data": {"image": f"http://127.0.0.1:9/{image(i)}", "global_key": image(i)},
         "predictions": [{"model_version": R1, "result": []}]} for i in range(4)]).task_ids
    store = PredictionStore(bridge.data / "predictions.sqlite3", follow=False)
    predictor = Predictor(store, Overrides.load(None), store.meta()["model_version"])
    cursor = tmp_path / "cursor"

    def refresher(api):
        return PredictionRefresher(api, predictor, project.id, versions.known(bridge.data),
                                   cursor, page_size=2)
    with pytest.raises(LabelStudioUnavailable):
        refresher(FailingOnce(ls.url, ls.token)).run()
    assert cursor.read_text() == str(ids[1])               # the first page was finished
    assert [p["model_version"] for p in predictions(ls, ids[2])] == [R1]
    summary = refresher(LabelStudioApi(ls.url, ls.token)).run()
    assert (summary.resumed_after, summary.tasks, summary.written) == (ids[1], 2, 2)
    for task_id in ids:
        assert [p["model_version"] for p in predictions(ls, task_id)] == [R2]
    assert not cursor.exists()
    store.close()
    ls.api("DELETE", f"/api/projects/{project.id}/")
