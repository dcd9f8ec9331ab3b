"""Prepared predictions: every row (the first included), each row's losses stored and listed,
the same bytes whether prepared in this process or in workers; on a SQLite index and on one
published into the database replicas share."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from labelbridge.labelbox.export import Selection
from labelbridge.labelstudio.mapping import Overrides
from labelbridge.predictions.indexer import index_export
from labelbridge.predictions.predictor import Predictor
from labelbridge.predictions.store import PredictionStore
from labelbridge.service.cli import app

from tests.helpers import IMAGE_CONFIG, bbox, export_row


def _export(tmp_path, rows=3):
    path = tmp_path / "export.ndjson"
    lines = []
    for i in range(rows):
        broken = bbox(f"cbad{i}", "Car", 1, 2, 3, 4)
        del broken["bounding_box"]["height"]
        lines.append(orjson.dumps(export_row([bbox(f"cok{i}", "Car", 1, 2, 3, 4), broken],
                                             data_row_id=f"cdr{i}", global_key=f"k{i}")))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _open(index_home, built):
    """The store of the index built at ``built``: that file, or a generation it was
    published into."""
    home = index_home(built)
    if home == built:
        return PredictionStore(built)
    home.index.publish(built, "test")
    return home.open_pinned()


@pytest.fixture()
def store(tmp_path, index_home):
    index_export(_export(tmp_path), tmp_path / "predictions.sqlite3", Selection(), workers=0)
    s = _open(index_home, tmp_path / "predictions.sqlite3")
    yield s
    s.close()


def test_iter_pks_includes_the_first_row(store):
    pks = [pk for batch in store.iter_pks(2) for pk in batch]
    assert pks[0] == 0 and len(pks) == store.count() == 3


def test_prepare_converts_every_row_and_stores_its_losses(store):
    ctx = Predictor(store, Overrides(), "v1", workers=1).prepare(IMAGE_CONFIG)
    pks = [pk for batch in store.iter_pks() for pk in batch]
    prepared = store.prepared(ctx.key, pks)
    assert sorted(prepared) == pks                       # the first row too
    assert all(orjson.loads(p)["result"][0]["id"].startswith("cok") for p in prepared.values())
    losses = [orjson.loads(line) for blob in store.iter_losses(ctx.key)
              for line in blob.splitlines()]
    assert [(x["data_row"], x["region"], x["field"], x["reason"]) for x in losses] == [
        (f"cdr{i}", f"cbad{i}", "objects[1].bounding_box.height", "missing") for i in range(3)]
    assert ctx.report.lost == 3


def test_workers_prepare_the_same_bytes(tmp_path, index_home):
    export = _export(tmp_path, rows=7)
    out = {}
    for workers in (1, 2):
        index = tmp_path / f"w{workers}.sqlite3"
        index_export(export, index, Selection(), workers=0)
        s = _open(index_home, index)
        ctx = Predictor(s, Overrides(), "v1", workers=workers).prepare(IMAGE_CONFIG)
        pks = [pk for b in s.iter_pks() for pk in b]
        out[workers] = (s.prepared(ctx.key, pks), b"".join(s.iter_losses(ctx.key)),
                        dict(ctx.report.skipped), dict(ctx.report.converted))
        s.close()
    assert out[1] == out[2]


def test_the_losses_command_lists_every_loss(tmp_path, monkeypatch, store):
    ctx = Predictor(store, Overrides(), "v1", workers=1).prepare(IMAGE_CONFIG)
    monkeypatch.setenv("LABELBRIDGE_DATA_DIR", str(tmp_path))
    if not isinstance(store, PredictionStore):
        monkeypatch.setenv("LABELBRIDGE_DATABASE_URL", store.db.url)
    result = CliRunner().invoke(app, ["losses", "--context", ctx.key[:12]])
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert [x["data_row"] for x in lines] == ["cdr0", "cdr1", "cdr2"]
    assert all(x["context"] == ctx.key[:12] for x in lines)


def test_predictions_prepared_by_an_older_writer_are_not_served(store, monkeypatch):
    """The context key holds the writer's output version: after an upgrade that changes the
    results (key points gained value.width), every row is prepared again, none served stale."""
    from labelbridge.predictions import predictor as predictor_module

    old = Predictor(store, Overrides(), "v1", workers=1).prepare(IMAGE_CONFIG)
    monkeypatch.setattr(predictor_module, "RESULTS_VERSION", predictor_module.RESULTS_VERSION + 1)
    new = Predictor(store, Overrides(), "v1", workers=1).context(IMAGE_CONFIG)
    assert new.key != old.key
    assert store.context_complete(old.key) and not store.context_complete(new.key)
