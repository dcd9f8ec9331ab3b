"""Which run is served and how a newer index replaces the served one (predictions/sources.py,
predictions/live.py), with the real SDK against an in-process Labelbox stand-in; the serving
tests on both homes of the index (a SQLite file, the database replicas share)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from labelbridge.labelbox.export import ExportError, Selection
from labelbridge.labelbox.model_runs import ModelRunClient
from labelbridge.labelstudio.mapping import Overrides
from labelbridge.model.sink import PermanentError
from labelbridge.predictions import live, versions
from labelbridge.predictions.homes import FileHome
from labelbridge.predictions.live import LiveIndex
from labelbridge.predictions.predictor import Predictor
from labelbridge.predictions.run_index import index_rows
from labelbridge.predictions.sources import RunSource, ensure
from labelbridge.predictions.store import PredictionStore
from labelbridge.settings import SettingsError, load_settings

from tests.helpers import IMAGE_CONFIG, MODEL, run_rows, wait_for
from tests.lbstandin import LabelboxStandIn

R1, R2, R3 = "crunlive00000000000000001", "crunlive00000000000000002", "crunlive00000000000000003"


@pytest.fixture
def standin():
    s = LabelboxStandIn(api_key="k").start()
    s.add_model(MODEL, name="m")
    s.add_model_run(MODEL, R1, "prod-1", run_rows(R1, 20, tag="a"),
                    created_at="2025-01-01T00:00:00.000Z")
    s.add_model_run(MODEL, R2, "prod-2", run_rows(R2, 20, tag="b", left=30.0),
                    created_at="2025-02-01T00:00:00.000Z")
    s.add_model_run(MODEL, R3, "experiment", run_rows(R3, 5, tag="c"),
                    created_at="2025-03-01T00:00:00.000Z")
    yield s
    s.stop()


@pytest.fixture
def client(standin):
    return ModelRunClient("k", endpoint=standin.endpoint, rest_endpoint=standin.rest_endpoint,
                          app_url=standin.app_url)


def predictor(store: PredictionStore, version: str) -> Predictor:
    return Predictor(store, Overrides.load(None), version)


def served_json(index: LiveIndex) -> str:
    (pred,) = index.served.predictor.predict([{"data": {"global_key": "mr-1.jpg"}}],
                                             IMAGE_CONFIG)
    return pred.decode()


def test_the_newest_run_whose_name_matches(client):
    assert client.newest_run(MODEL).id == R3
    assert client.newest_run(MODEL, RunSource(client, model_id=MODEL, pattern="^prod-").pattern
                             ).id == R2
    with pytest.raises(PermanentError, match="no model run matching 'nope'"):
        RunSource(client, model_id=MODEL, pattern="nope").offer()
    with pytest.raises(PermanentError, match="cmissing"):
        RunSource(client, run_id="cmissing00000000000000001").offer()


def test_an_unchanged_run_is_not_exported_again_and_a_changed_one_is(client, standin, tmp_path):
    path = tmp_path / "predictions.sqlite3"
    source = RunSource(client, run_id=R1)
    assert ensure(source, path).rows == 20
    exports = standin.calls["exportDataRowsInModelRun"]
    assert ensure(source, path) is None
    assert standin.calls["exportDataRowsInModelRun"] == exports
    standin.set_model_run_rows(R1, run_rows(R1, 21, tag="a"))        # updatedAt moves on
    assert ensure(source, path).rows == 21
    by_name = RunSource(client, run_id=R1, version_from="name")
    assert ensure(by_name, path).model_version == "prod-1"              # another fingerprint


def test_the_model_version_is_the_run_id_or_its_name(client, tmp_path, index_home):
    for version_from, expected in (("id", R2), ("name", "prod-2")):
        index = LiveIndex(index_home(tmp_path / version_from / "p.sqlite3"),
                          RunSource(client, model_id=MODEL, pattern="prod",
                                    version_from=version_from), predictor)
        (tmp_path / version_from).mkdir(exist_ok=True)
        assert index.open().model_version == expected
        assert f'"model_version":"{expected}"' in served_json(index)
        assert versions.known(tmp_path / version_from) == [expected]
        index.stop()


def test_check_swaps_in_a_newer_run_and_keeps_the_old_store_readable(client, standin, tmp_path,
                                                                      index_home):
    path = index_home(tmp_path / "predictions.sqlite3")
    index = LiveIndex(path, RunSource(client, model_id=MODEL, pattern="^prod-"), predictor)
    assert index.open().model_version == R2
    swapped = []
    index.on_swap = swapped.append
    assert index.check() is False                      # nothing new
    old = index.served
    standin.add_model_run(MODEL, "crunlive00000000000000004", "prod-4",
                          run_rows("crunlive00000000000000004", 3, tag="d"))
    assert index.check() is True
    assert [s.model_version for s in swapped] == ["crunlive00000000000000004"]
    assert old.store.count() == 20                     # pinned to the index it opened
    assert index.served.store.count() == 3 and index.swaps == 1
    index.stop()


def test_an_index_rebuilt_by_another_process_is_picked_up(client, tmp_path, index_home):
    index = LiveIndex(index_home(tmp_path / "predictions.sqlite3"), None, predictor,
                      interval=300)
    assert index.open() is None                        # nothing there yet
    other = index_home(tmp_path / "other" / "predictions.sqlite3")   # another replica's
    if isinstance(other, Path):
        other = FileHome(tmp_path / "predictions.sqlite3")        # the same file
    other.ensure(RunSource(client, run_id=R1))
    assert index.check() is True and index.served.model_version == R1
    assert index.check() is False
    index.stop()


def test_a_failed_build_keeps_serving_and_is_reported(client, standin, tmp_path, index_home):
    index = LiveIndex(index_home(tmp_path / "predictions.sqlite3"), RunSource(client, run_id=R2), predictor)
    index.open()
    standin.set_model_run_rows(R2, run_rows(R2, 20, tag="b", left=31.0))
    standin.fail_export(R2, after_chunks=0, kind="503")
    assert index.check() is False
    assert "503" in index.last_error and index.served.model_version == R2
    assert index.home.fingerprint() == index.served.fingerprint   # the index was not replaced
    assert index.check() is True and index.last_error is None
    index.stop()


def test_poke_looks_in_the_background_at_most_every_few_seconds(client, standin, tmp_path,
                                                                index_home):
    index = LiveIndex(index_home(tmp_path / "p.sqlite3"), RunSource(client, run_id=R1), predictor,
                      interval=300)
    index.open()
    looks = standin.calls["modelRun"]
    index._last_check = time.monotonic() - live.POKE_MIN_INTERVAL - 1  # the last look is old
    index.poke()                                       # returns at once; looks in a thread
    wait_for(lambda: standin.calls["modelRun"] == looks + 1, timeout=10, what="a look")
    index.poke()                                       # too soon after that look
    time.sleep(0.3)
    assert standin.calls["modelRun"] == looks + 1
    never = LiveIndex(tmp_path / "q.sqlite3", RunSource(client, run_id=R1), predictor,
                      interval=0)
    never.poke()
    time.sleep(0.3)
    assert standin.calls["modelRun"] == looks + 1 and never.served is None
    index.stop()


def test_a_stream_row_that_is_not_an_export_row_names_its_place(tmp_path):
    rows = run_rows(R1, 2) + [{"no": "data_row"}]
    with pytest.raises(ExportError, match=r"model run x: row 3: not an export-v2 row"):
        index_rows(iter(rows), tmp_path / "p.sqlite3", Selection("predictions", R1),
                   {"fingerprint": "f", "model_version": "v"}, "model run x")
    assert not list(tmp_path.iterdir())                 # nothing left behind


def test_a_pinned_store_keeps_reading_its_file_after_a_rebuild(client, tmp_path):
    path = tmp_path / "p.sqlite3"
    ensure(RunSource(client, run_id=R1), path)
    pinned, following = PredictionStore(path, follow=False), PredictionStore(path)
    assert pinned.count() == following.count()
    ensure(RunSource(client, run_id=R3), path)
    pinned._checked = following._checked = 0.0           # their once-a-second look is due
    assert (pinned.count(), following.count()) == (20, 5)
    pinned.close(), following.close()


def test_dead_builds_are_removed_before_the_next(client, tmp_path):
    path = tmp_path / "p.sqlite3"
    dead = path.with_name(f"{path.name}.build-999999999")
    dead.write_bytes(b"half")
    alive = path.with_name(f"{path.name}.build-{os.getppid()}")
    alive.write_bytes(b"running")
    ensure(RunSource(client, run_id=R3), path)
    assert not dead.exists() and alive.exists()


@pytest.mark.parametrize("env, message", [
    ({"LABELBOX_MODEL_ID": "m"}, "LABELBOX_MODEL_ID needs LABELBOX_API_KEY"),
    ({"LABELBOX_MODEL_ID": "m", "LABELBOX_MODEL_RUN_ID": "r", "LABELBOX_API_KEY": "k",
      "LABELBOX_PROJECT_ID": "p"}, "not both"),
    ({"LABELBOX_MODEL_ID": "m", "LABELBOX_API_KEY": "k", "LABELBOX_PROJECT_ID": "p",
      "LABELBRIDGE_MODEL_VERSION": "v"}, "each run needs its own model version"),
    ({"LABELBOX_MODEL_RUN_PATTERN": "x"}, "LABELBOX_MODEL_RUN_PATTERN needs LABELBOX_MODEL_ID"),
    ({"LABELBOX_MODEL_ID": "m", "LABELBOX_API_KEY": "k", "LABELBOX_PROJECT_ID": "p",
      "LABELBOX_MODEL_RUN_PATTERN": "("}, "LABELBOX_MODEL_RUN_PATTERN: not a regular expression"),
    ({"LABELBRIDGE_MODEL_VERSION_FROM": "title"}, "LABELBRIDGE_MODEL_VERSION_FROM"),
    ({"LABELBRIDGE_REFRESH_INTERVAL": "-1"}, "LABELBRIDGE_REFRESH_INTERVAL"),
    ({"LABELBOX_ATTACH_LABELS": "true"}, "need a model run to serve"),
])
def test_bad_model_run_settings_name_the_variable(monkeypatch, env, message):
    for name in ("LABELBOX_API_KEY", "LABELBOX_PROJECT_ID", "LABELBRIDGE_EXPORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings()


def test_the_prediction_source_follows_the_settings(monkeypatch):
    for name in ("LABELBRIDGE_EXPORT", "LABELBOX_MODEL_ID", "LABELBOX_MODEL_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().prediction_source == "none"
    monkeypatch.setenv("LABELBOX_MODEL_RUN_ID", "r")
    assert load_settings().prediction_source == "none"     # a run id alone selects in a file
    monkeypatch.setenv("LABELBOX_API_KEY", "k")
    monkeypatch.setenv("LABELBOX_PROJECT_ID", "p")
    assert load_settings().prediction_source == "model_run"
    monkeypatch.delenv("LABELBOX_MODEL_RUN_ID")
    monkeypatch.setenv("LABELBOX_MODEL_ID", "m")
    assert load_settings().prediction_source == "model"
