"""Brush masks against a real Label Studio 1.23.2: Labelbox masks (a single-instance PNG and a
composite of three instances, two of them of one label, served by the stand-in only with the API
key) become stored brush predictions carrying the Labelbox feature ids; "create annotations from
predictions" sends the bulk ANNOTATIONS_CREATED webhook, and the stand-in receives one mask line
per region with uuid5 of those ids, pixel for pixel the masks it served."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import uuid

import httpx
import numpy as np
import orjson
import pytest
from label_studio_sdk.converter import brush as sdk
from PIL import Image

from labelbridge.model.ids import LABELBRIDGE_NAMESPACE

from tests.helpers import ROOT, wait_for
from tests.lbstandin import Feature, LabelboxStandIn, new_cuid
from tests.maskgen import composite, single_png
from tests.procs import free_port, start_process, stop_process

CONFIG = (ROOT / "configs" / "segmentation.xml").read_text()
TOKEN = "e2e-mask-hook"
BASIC = ("label-studio", "mask-secret")
PROJECT, RUN = new_cuid(), new_cuid()
W, H = 160, 120
SKY = np.zeros((H, W), dtype=bool)
SKY[:30, :] = True
LABELS = np.zeros((H, W), dtype=np.int64)
LABELS[40:100, 10:50], LABELS[40:100, 60:100], LABELS[100:, 20:140] = 1, 2, 3
COLORS = [(214, 39, 40), (214, 40, 40), (255, 127, 14)]
NAMES = {1: "Building", 2: "Building", 3: "Vehicle"}
ONTOLOGY = [Feature(n, "mask", nested=[Feature("visibility", "radio", options=["full", "partial"])])
            for n in ("Sky", "Building", "Vehicle")]
ROWS = 2


def u5(region_id: str) -> str:
    return str(uuid.uuid5(LABELBRIDGE_NAMESPACE, region_id))


def fid(i: int, what: str) -> str:
    return f"c{what[:6]:x<6}{i:018d}"


def export_rows(standin) -> list[dict]:
    rows = []
    for i in range(ROWS):
        sky = standin.add_mask(single_png(SKY, "white"), project_id=PROJECT, feature_id=fid(i, "sky"))
        comp = standin.add_mask(composite(LABELS, COLORS), task_id=new_cuid())
        objects = [{"feature_id": fid(i, "sky"), "name": "Sky", "annotation_kind":
                    "ImageSegmentationMask", "mask": {"url": sky}, "classifications": [
                        {"feature_id": fid(i, "vis"), "name": "visibility",
                         "radio_answer": {"name": "full"}}]}]
        objects += [{"feature_id": fid(i, f"inst{k}"), "name": NAMES[k],
                     "annotation_kind": "ImageSegmentationMask", "classifications": [],
                     "composite_mask": {"url": comp, "color_rgb": list(COLORS[k - 1])}}
                    for k in (1, 2, 3)]
        rows.append({"data_row": {"id": f"cdrmask{i:018d}", "global_key": f"mask-{i}.jpg",
                                  "row_data": f"http://127.0.0.1:9/mask-{i}.jpg"},
                     "media_attributes": {"width": W, "height": H, "mime_type": "image/jpeg"},
                     "experiments": {new_cuid(): {"runs": {RUN: {"name": "masks", "predictions": [
                         {"annotations": {"objects": objects, "classifications": [],
                                          "relationships": []}}]}}}}})
    return rows


@pytest.fixture(scope="module")
def world(label_studio, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("masks-e2e")
    standin = LabelboxStandIn(api_key="lb-mask-key").start()
    standin.add_project(PROJECT, name="masks", ontology=ONTOLOGY)
    standin.add_data_rows(PROJECT, [{"id": f"cdrmask{i:018d}", "global_key": f"mask-{i}.jpg",
                                     "row_data": f"http://127.0.0.1:9/mask-{i}.jpg",
                                     "media_attributes": {"width": W, "height": H}}
                                    for i in range(ROWS)])
    export = tmp / "export.ndjson"
    export.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in export_rows(standin)))
    port = free_port()
    env = {**os.environ, "LABELBRIDGE_EXPORT": str(export), "LABELBRIDGE_DATA_DIR": str(tmp / "var"),
           "LABELBRIDGE_PORT": str(port), "LABELBRIDGE_WEBHOOK_TOKEN": TOKEN,
           "BASIC_AUTH_USER": BASIC[0], "BASIC_AUTH_PASS": BASIC[1],
           "LABELBOX_API_KEY": "lb-mask-key", "LABELBOX_PROJECT_ID": PROJECT,
           "LABELBOX_ENDPOINT": standin.endpoint, "LABELBOX_REST_ENDPOINT": standin.rest_endpoint,
           "LABELBOX_APP_URL": standin.app_url, "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "LABELBRIDGE_RECONCILE_INTERVAL": "0",
           "LABELBRIDGE_BATCH_MAX_WAIT": "0.3", "LABELBRIDGE_IMPORT_POLL_INTERVAL": "0.1"}
    url = f"http://127.0.0.1:{port}"
    proc = start_process([sys.executable, "-m", "labelbridge", "serve"], env, url + "/health",
                         tmp / "labelbridge.log",
                         headers={"Authorization": httpx.BasicAuth(*BASIC)._auth_header})
    yield label_studio, standin, url, env
    stop_process(proc)
    standin.stop()


def dm_action(ls, action: str, project_id: int, **extra) -> None:
    r = ls.api("POST", f"/api/dm/actions?id={action}&project={project_id}",
               json={"selectedItems": {"all": True, "excluded": []}, **extra})
    assert r.status_code == 200, r.text


def test_masks_become_predictions_then_annotations_then_labelbox_masks(world, ls_project):
    ls, standin, url, env = world
    p = ls_project(CONFIG)
    tasks = ls.client().projects.import_tasks(
        id=p.id, return_task_ids=True,
        request=[{"data": {"image": f"http://127.0.0.1:9/mask-{i}.jpg",
                           "global_key": f"mask-{i}.jpg"}} for i in range(ROWS)]).task_ids
    wired = subprocess.run([sys.executable, "-m", "labelbridge", "connect", "--ls-url", ls.url,
                            "--ls-token", ls.token, "--ls-project", str(p.id), "--backend-url", url],
                           env=env, capture_output=True, text=True, timeout=120)
    assert wired.returncode == 0, wired.stderr

    dm_action(ls, "retrieve_tasks_predictions", p.id)
    for i, task_id in enumerate(tasks):
        (pred,) = ls.api("GET", f"/api/predictions?task={task_id}").json()
        brushes = [r for r in pred["result"] if r["type"] == "brushlabels"]
        assert [r["id"] for r in brushes] == [fid(i, "sky")] + [fid(i, f"inst{k}") for k in (1, 2, 3)]
        assert [r["value"]["brushlabels"] for r in brushes] == [["Sky"], ["Building"],
                                                                ["Building"], ["Vehicle"]]
        for r, want in zip(brushes, [SKY, LABELS == 1, LABELS == 2, LABELS == 3]):
            rgba = sdk.decode_rle(r["value"]["rle"]).reshape(H, W, 4)
            assert np.array_equal(rgba[:, :, 3] == 255, want)
        assert any(r["type"] == "choices" and r["id"] == fid(i, "sky") for r in pred["result"])

    dm_action(ls, "predictions_to_annotations", p.id, model_version=RUN)   # the bulk webhook
    for i, task_id in enumerate(tasks):
        (ann,) = ls.api("GET", f"/api/tasks/{task_id}/annotations/").json()
        assert fid(i, "sky") in {r.get("id") for r in ann["result"]}
        (label,) = wait_for(lambda: [lab for lab in standin.labels(PROJECT)
                                     if lab["global_key"] == f"mask-{i}.jpg"], what="label")
        lines = {line["uuid"]: line for line in standin.named(PROJECT, label["annotations"])}
        assert set(lines) == {u5(fid(i, "sky"))} | {u5(fid(i, f"inst{k}")) for k in (1, 2, 3)}
        sky = lines[u5(fid(i, "sky"))]
        assert sky["name"] == "Sky" and sky["classifications"] == [
            {"name": "visibility", "answer": {"name": "full"}}]
        for key, want in [("sky", SKY)] + [(f"inst{k}", LABELS == k) for k in (1, 2, 3)]:
            png = base64.b64decode(lines[u5(fid(i, key))]["mask"]["png"])
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))) == 1, want)
    assert standin.calls["maskFile"] == 2 * ROWS   # once per PNG, at index time
