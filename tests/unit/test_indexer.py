"""Index build: the feature names it collects and what a bad export leaves behind."""

import gzip
import os
import random
import sqlite3
import subprocess

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labelbridge.labelbox.export import (ExportError, FeatureNames, Selection, export_files,
                                         feature_names)
from labelbridge.predictions.indexer import index_export, plan_chunks, reader_count
from labelbridge.predictions.store import PredictionStore
from labelbridge.service.cli import app

from bench import synthetic

NAMES = st.sampled_from(["Car", "car", "Car ", "a\"b", "back\\slash", "Ünïcode", "ca", "", "r"])


def _annotations(draw_names: list[str]) -> dict:
    objects = [{"name": n, "value": n.lower(), "classifications": [
        {"name": draw_names[-1], "radio_answer": {"name": n + "!", "classifications": []}}]}
        for n in draw_names]
    return {"objects": objects, "classifications": [], "relationships": [],
            "other": {"not_a_name": "Car", "name_x": "ignored"}}


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(NAMES, min_size=1, max_size=4), max_size=6))
def test_collected_names_are_exactly_those_the_walk_finds(rows):
    collected, walked = FeatureNames(), set()
    for names in rows:
        annotations = _annotations(names)
        collected.add(orjson.dumps(annotations), annotations)
        walked |= feature_names({"annotations": annotations})
    assert collected.names == walked


def test_index_holds_every_row_and_the_export_feature_names(tmp_path):
    export = tmp_path / "export.ndjson"
    rnd = random.Random(7)
    export.write_bytes(b"".join(orjson.dumps(synthetic.make_row(i, 3, rnd)) + b"\n\n"
                                for i in range(300)))
    result = index_export(export, tmp_path / "ix.sqlite3", Selection())
    assert (result.rows, result.model_version) == (300, synthetic.RUN_ID)
    db = sqlite3.connect(tmp_path / "ix.sqlite3")
    keys = [k for k, in db.execute("SELECT global_key FROM rows ORDER BY pk")]
    names = {n for n, in db.execute("SELECT name FROM feature_names")}
    db.close()
    assert keys == [synthetic.global_key(i) for i in range(300)]
    rnd = random.Random(7)
    expected = set().union(*(feature_names({"annotations": synthetic.make_row(i, 3, rnd)[
        "experiments"][synthetic.MODEL_ID]["runs"][synthetic.RUN_ID]["predictions"][0][
        "annotations"]}) for i in range(300)))
    assert names == expected and "rain_intensity" in names


def test_a_bad_line_names_file_and_line_and_leaves_no_index(tmp_path):
    export = tmp_path / "export.ndjson"
    good = orjson.dumps(synthetic.make_row(0, 1, random.Random(1)))
    export.write_bytes(b"\n".join([good] * 300 + [b"{broken", good]) + b"\n")
    with pytest.raises(ExportError, match=r"export.ndjson:301: not valid JSON"):
        index_export(export, tmp_path / "ix.sqlite3", Selection())
    assert list(tmp_path.iterdir()) == [export]  # no index, no half-built file left


def _index_content(path):
    """Every row (keys, origin, payload) as the store reads it, the feature names, the meta."""
    store = PredictionStore(path)
    try:
        pks = [pk for batch in store.iter_pks() for pk in batch]
        payloads = store.rows(pks)
        db = sqlite3.connect(path)
        keys = db.execute("SELECT * FROM rows ORDER BY pk").fetchall()
        names = db.execute("SELECT name FROM feature_names ORDER BY name").fetchall()
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key NOT IN "
                               "('built_at', 'parts')"))
        db.close()
    finally:
        store.close()
    return [(*k, payloads[k[0]][1]) for k in keys], names, meta


def _mixed_export(folder):
    """A folder of two plain files and a gzip, with rows that carry no predictions."""
    rnd = random.Random(3)
    lines = []
    for i in range(240):
        row = synthetic.make_row(i, 2, rnd)
        if i % 17 == 0:
            row.pop("experiments")  # skipped: no predictions
        lines.append(orjson.dumps(row) + b"\n")
    folder.mkdir()
    (folder / "a.ndjson").write_bytes(b"".join(lines[:100]))
    with gzip.open(folder / "b.ndjson.gz", "wb") as fh:
        fh.write(b"".join(lines[100:140]))
    (folder / "c.ndjson").write_bytes(b"".join(lines[140:]) + b"\n\n")
    return folder


@pytest.mark.parametrize("workers", [2, 3])
def test_readers_in_parallel_build_the_index_one_process_builds(tmp_path, workers):
    export = _mixed_export(tmp_path / "export")
    one = index_export(export, tmp_path / "one.sqlite3", Selection(), workers=1)
    many = index_export(export, tmp_path / "many.sqlite3", Selection(), workers=workers,
                        chunk_bytes=20_000)
    assert reader_count(plan_chunks(export_files(export), 20_000), workers) == workers
    assert (many.rows, many.skipped_rows, many.origins) == (one.rows, one.skipped_rows,
                                                            one.origins)
    assert one.rows == 240 - len(range(0, 240, 17))
    assert _index_content(tmp_path / "many.sqlite3") == _index_content(tmp_path / "one.sqlite3")
    parts = set(orjson.loads(_meta(tmp_path / "many.sqlite3")["parts"]))
    assert len(parts) == workers and _meta(tmp_path / "one.sqlite3")["parts"] == "[]"
    files = {p.name for p in tmp_path.iterdir()}
    assert files == {"export", "one.sqlite3", "many.sqlite3"} | parts  # no build file left


def _meta(path):
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT key, value FROM meta"))
    finally:
        db.close()


def test_a_rebuild_removes_the_parts_of_the_build_before(tmp_path):
    export = _mixed_export(tmp_path / "export")
    index = tmp_path / "ix.sqlite3"
    index_export(export, index, Selection(), workers=2, chunk_bytes=20_000)
    first = set(orjson.loads(_meta(index)["parts"]))
    index_export(export, index, Selection(), workers=3, chunk_bytes=20_000)
    second = set(orjson.loads(_meta(index)["parts"]))
    assert len(second) == 3 and not first & second
    assert {p.name for p in tmp_path.iterdir()} == {"export", "ix.sqlite3"} | second
    content = _index_content(index)
    index_export(export, index, Selection(), workers=1)
    assert {p.name for p in tmp_path.iterdir()} == {"export", "ix.sqlite3"}
    assert _index_content(index) == content


def test_a_bad_line_read_by_a_worker_names_file_and_line_and_leaves_nothing(tmp_path):
    export = tmp_path / "export.ndjson"
    good = orjson.dumps(synthetic.make_row(0, 1, random.Random(1)))
    export.write_bytes(b"\n".join([good] * 300 + [b'{"data_row": 1}'] + [good] * 5) + b"\n")
    with pytest.raises(ExportError, match=r"export.ndjson:301: not an export-v2 row"):
        index_export(export, tmp_path / "ix.sqlite3", Selection(), workers=2,
                     chunk_bytes=len(good) * 40)
    assert list(tmp_path.iterdir()) == [export]


def test_chunks_are_whole_lines_that_cover_each_file(tmp_path):
    export = _mixed_export(tmp_path / "export")
    chunks = plan_chunks(export_files(export), 5_000)
    for f in export_files(export):
        mine = [c for c in chunks if c.path == str(f)]
        if f.name.endswith(".gz"):
            assert [(c.start, c.end) for c in mine] == [(0, None)]
            continue
        data = f.read_bytes()
        assert mine[0].start == 0 and mine[-1].end == len(data) and len(mine) > 1
        for a, b in zip(mine, mine[1:]):
            assert a.end == b.start and data[a.end - 1:a.end] == b"\n"


def test_cli_index_with_workers(tmp_path, monkeypatch):
    export = _mixed_export(tmp_path / "export")
    for name in list(os.environ):
        if name.startswith(("LABELBRIDGE_", "LABELBOX_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LABELBRIDGE_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    ok = runner.invoke(app, ["index", "--export", str(export), "--workers", "2"])
    assert ok.exit_code == 0, ok.output
    assert "indexed 225 data rows (15 without predictions)" in ok.output
    (export / "c.ndjson").write_bytes(b'{"data_row": {"id": "x"}}\n{"data_row": []}\n')
    bad = runner.invoke(app, ["index", "--export", str(export), "--workers", "2"])
    assert bad.exit_code != 0
    assert "c.ndjson:2: not an export-v2 row (no 'data_row' object)" in bad.output


def test_cli_index_publishes_into_the_shared_database(tmp_path, monkeypatch, pg_url):
    """With LABELBRIDGE_DATABASE_URL the index built (by worker processes, in part files) goes
    into the database as the current generation, every row and payload; nothing stays local."""
    from labelbridge.postgres import Database
    from labelbridge.predictions.pg_store import PgIndex

    export = _mixed_export(tmp_path / "export")
    for name in list(os.environ):
        if name.startswith(("LABELBRIDGE_", "LABELBOX_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LABELBRIDGE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LABELBRIDGE_DATABASE_URL", pg_url)
    ok = CliRunner().invoke(app, ["index", "--export", str(export), "--workers", "2"])
    assert ok.exit_code == 0, ok.output
    assert "published to LABELBRIDGE_DATABASE_URL as generation 1" in ok.output
    assert list((tmp_path / "var").glob("predictions*")) == []
    local = tmp_path / "local.sqlite3"
    index_export(export, local, Selection(), workers=0)
    db = Database(pg_url)
    try:
        shared = PgIndex(db, tmp_path).open()
        assert shared.count() == 225 and shared.feature_names() == \
            PredictionStore(local).feature_names()
        pks = [pk for batch in shared.iter_pks() for pk in batch]
        assert shared.rows(pks) == PredictionStore(local).rows(pks)
    finally:
        db.close()


def test_a_build_removes_parts_of_dead_builds_but_not_of_a_running_one(tmp_path):
    export = _mixed_export(tmp_path / "export")
    index = tmp_path / "ix.sqlite3"
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has any more
    crashed = tmp_path / f"ix.sqlite3.part-{gone.pid}-abc-0"
    running = tmp_path / f"ix.sqlite3.part-{os.getpid()}-def-0"  # a build beside this one
    crashed.write_bytes(b"left by a build that was killed")
    running.write_bytes(b"being written")
    index_export(export, index, Selection(), workers=1)
    assert not crashed.exists() and running.exists()
