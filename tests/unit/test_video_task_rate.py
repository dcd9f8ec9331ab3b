"""A Video tag whose ``frameRate`` names a task field (``frameRate="$fps"``): the editor counts
frames with the task's value (24 when the task has none), so predictions carry ``time = frame /
the task's rate`` and annotations are read with it, whatever the data row's rate."""

from __future__ import annotations

import copy
import io

import orjson
import pytest

from labelbridge.groundtruth.converter import GroundTruthConverter, resolver_from_store
from labelbridge.labelbox.export import Selection
from labelbridge.labelstudio import webhooks
from labelbridge.labelstudio.mapping import Mapping, Overrides
from labelbridge.model.regions import VideoTrack
from labelbridge.model.report import ConversionReport
from labelbridge.predictions.indexer import index_export
from labelbridge.predictions.predictor import Predictor
from labelbridge.predictions.store import PredictionStore
from labelbridge.tools.convert import lb_to_ls

from tests.helpers import DEMO_EXPORT, capture
from tests.videorows import VIDEO_CONFIG

CONFIG = VIDEO_CONFIG.format(rate="$fps")
ROW = next(r for line in DEMO_EXPORT.read_bytes().splitlines()
           if (r := orjson.loads(line))["data_row"]["global_key"] == "demo-video-1.mp4")
GK = ROW["data_row"]["global_key"]   # its media attributes: 25 frames a second


@pytest.fixture()
def store(tmp_path):
    (tmp_path / "export.ndjson").write_bytes(orjson.dumps(ROW) + b"\n")
    index_export(tmp_path / "export.ndjson", tmp_path / "p.sqlite3", Selection(), workers=0)
    s = PredictionStore(tmp_path / "p.sqlite3")
    yield s
    s.close()


def sequences(prediction: bytes) -> list[list[tuple[int, float]]]:
    return [[(k["frame"], k["time"]) for k in r["value"]["sequence"]]
            for r in orjson.loads(prediction)["result"] if r["type"] == "videorectangle"]


@pytest.mark.parametrize("fps, rate", [(50, 50.0), ("10", 10.0), (0.04, 25.0), (None, 24.0)])
def test_a_prediction_keys_its_frames_to_the_tasks_rate(store, fps, rate):
    p = Predictor(store, Overrides(), "v1")
    p.prepare(CONFIG)                                  # prepared with the data row's 25
    data = {"video": "http://x/v.mp4", "global_key": GK, **({"fps": fps} if fps else {})}
    (prediction,) = p.predict([{"id": 1, "data": data}], CONFIG)
    seqs = sequences(prediction)
    assert seqs and all(t == f / rate for seq in seqs for f, t in seq)


def test_a_fixed_rate_needs_nothing_from_the_task(store):
    fixed = VIDEO_CONFIG.format(rate="30")
    p = Predictor(store, Overrides(), "v1")
    assert p.context(fixed).for_task is None
    (prediction,) = p.predict([{"id": 1, "data": {"global_key": GK, "fps": 50}}], fixed)
    assert all(t == f / 30 for seq in sequences(prediction) for f, t in seq)


def test_an_annotation_is_read_with_the_tasks_rate():
    """The editor may write a keyframe with its time only: frame = time x the task's rate."""
    body = copy.deepcopy(capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json"))
    body["project"]["label_config"] = CONFIG
    body["task"]["data"] = {"video": "http://x/v.mp4", "global_key": GK, "fps": 50}
    body["annotation"]["result"] = [{
        "id": "trk1", "from_name": "box", "to_name": "video", "type": "videorectangle",
        "original_width": 1280, "original_height": 720,
        "value": {"labels": ["Car"], "framesCount": 100, "sequence": [
            {"time": 0.2, "enabled": True, "x": 1, "y": 1, "width": 10, "height": 10},
            {"time": 1.0, "enabled": False, "x": 5, "y": 1, "width": 10, "height": 10}]}}]
    (change,) = webhooks.parse(body).changes
    converter = GroundTruthConverter(lambda h: CONFIG, Overrides(), resolver_from_store(None),
                                     lambda: set(), include_relations=False)
    (region,) = converter.convert(change.payload).task_regions.regions
    assert isinstance(region.shape, VideoTrack)
    assert [k.frame for s in region.shape.segments for k in s.keyframes] == [10, 50]


def test_a_task_made_from_the_data_row_carries_its_rate(tmp_path):
    """``convert lb2ls`` writes the tasks: their ``fps`` is the data row's, the rate the
    prediction's times were written with."""
    (tmp_path / "export.ndjson").write_bytes(orjson.dumps(ROW) + b"\n")
    out = io.BytesIO()
    lb_to_ls(tmp_path / "export.ndjson", Mapping(CONFIG), Selection(), out, ConversionReport())
    (task,) = orjson.loads(out.getvalue())
    assert task["data"]["fps"] == 25
    assert all(t == f / 25 for seq in sequences(orjson.dumps(task["predictions"][0]))
               for f, t in seq)
