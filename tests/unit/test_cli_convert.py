"""``convert`` and ``index`` as a user runs them: no traceback from any input, exit codes as
``--help`` says, outputs written atomically, every loss in ``--report``."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from labelbridge.service.cli import app

from tests.helpers import DEMO_EXPORT, ROOT, bbox, export_row

CONFIG = ROOT / "configs" / "image-detection.xml"
ONTOLOGY = ROOT / "configs" / "demo" / "ontology.json"
runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"traceback: {result.exception!r}"
    return result


def damaged_export(tmp_path):
    rows = []
    for i, bad in enumerate([None, "12", ...]):
        obj = bbox(f"cbad{i}", "Car", 1, 2, 3, 4)
        if bad is ...:
            del obj["bounding_box"]["height"]
        else:
            obj["bounding_box"]["height"] = bad
        rows.append(export_row([obj, bbox(f"cok{i}", "Car", 5, 5, 5, 5)], data_row_id=f"cdr{i}",
                               global_key=f"k{i}"))
    path = tmp_path / "export.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def test_lb2ls_reports_every_damaged_feature_and_converts_the_rest(tmp_path):
    out, report = tmp_path / "tasks.json", tmp_path / "losses.jsonl"
    result = run("convert", "lb2ls", "--export", damaged_export(tmp_path), "--label-config",
                 CONFIG, "--out", out, "--report", report)
    assert result.exit_code == 0, result.output
    tasks = orjson.loads(out.read_bytes())
    assert [[r["id"] for r in t["predictions"][0]["result"] if r["from_name"] == "label"]
            for t in tasks] == [["cok0"], ["cok1"], ["cok2"]]
    losses = [orjson.loads(x) for x in report.read_bytes().splitlines()]
    assert [(x["data_row"], x["region"], x["field"], x["source"]) for x in losses] == [
        (f"cdr{i}", f"cbad{i}", "objects[0].bounding_box.height", f"export.ndjson:{i + 1}")
        for i in range(3)]
    assert {x["reason"] for x in losses} == {"null, not a number", "a string, not a number",
                                             "missing"}


def test_an_unreadable_export_fails_with_1_and_leaves_the_old_output(tmp_path):
    export = damaged_export(tmp_path)
    export.write_bytes(export.read_bytes() + b'{"data_row": {"id": "x"}, "oops\n')
    out = tmp_path / "tasks.json"
    out.write_text("previous run")
    result = run("convert", "lb2ls", "--export", export, "--label-config", CONFIG, "--out", out)
    assert result.exit_code == 1
    assert "export.ndjson:4: not valid JSON" in result.output and "nothing written" in \
        result.output
    assert out.read_text() == "previous run"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("args", [
    ["convert", "lb2ls", "--export", "nope.ndjson", "--label-config", CONFIG],
    ["convert", "lb2ls", "--export", DEMO_EXPORT, "--label-config", CONFIG, "--source", "x"],
    ["convert", "ls2lb", "--tasks", "nope.json", "--label-config", CONFIG],
    ["convert", "ls2lb", "--tasks", DEMO_EXPORT, "--label-config", CONFIG, "--ontology",
     "nope.json"],
])
def test_bad_usage_exits_2(args):
    assert run(*args).exit_code == 2


def test_ls2lb_names_features_by_schema_id_and_reports_every_loss(tmp_path):
    tasks = tmp_path / "tasks.json"
    assert run("convert", "lb2ls", "--export", DEMO_EXPORT, "--label-config", CONFIG,
               "--out", tasks).exit_code == 0
    exported = [t for t in orjson.loads(tasks.read_bytes()) if t["predictions"]]  # no masks
    for i, t in enumerate(exported):
        t["id"] = i + 1
        result = [dict(r) for r in t["predictions"][0]["result"]]
        result.append({"id": "zz", "from_name": "label", "to_name": "image",
                       "type": "rectanglelabels", "value": {"x": "a", "rectanglelabels": ["Car"]},
                       "original_width": 10, "original_height": 10})
        t["annotations"] = [{"id": 100 + i, "result": result}]
    tasks.write_bytes(orjson.dumps(exported))
    out, report = tmp_path / "gt.ndjson", tmp_path / "losses.jsonl"
    result = run("convert", "ls2lb", "--tasks", tasks, "--label-config", CONFIG, "--ontology",
                 ONTOLOGY, "--out", out, "--report", report)
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    ontology = orjson.loads(ONTOLOGY.read_bytes())
    person = next(t["featureSchemaId"] for t in ontology["tools"] if t["name"] == "person")
    assert any(x.get("schemaId") == person for x in lines)   # LS "Person" -> the ontology's id
    assert all("name" not in x for x in lines)
    losses = [orjson.loads(x) for x in report.read_bytes().splitlines()]
    bad = [x for x in losses if x.get("region") == "zz"]
    assert [(x["task"], x["annotation"], x["field"]) for x in bad] == [
        ("1", "100", "value.x"), ("2", "101", "value.x")]


def test_index_with_a_label_config_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELBRIDGE_DATA_DIR", str(tmp_path / "data"))
    report = tmp_path / "losses.jsonl"
    result = run("index", "--export", damaged_export(tmp_path), "--label-config", CONFIG,
                 "--report", report, "--workers", "0")
    assert result.exit_code == 0, result.output
    losses = [orjson.loads(x) for x in report.read_bytes().splitlines()]
    assert [x["data_row"] for x in losses] == ["cdr0", "cdr1", "cdr2"]


def test_index_of_an_unreadable_export_exits_1(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELBRIDGE_DATA_DIR", str(tmp_path / "data"))
    export = tmp_path / "e.ndjson"
    export.write_text("not json\n")
    result = run("index", "--export", export, "--workers", "0")
    assert result.exit_code == 1 and "e.ndjson:1: not valid JSON" in result.output
    assert not (tmp_path / "data" / "predictions.sqlite3").exists()


@pytest.mark.parametrize("config, ontology, row", [
    (CONFIG, ONTOLOGY, "2560px-Kitano_Street_Kobe01s5s4110.jpeg"),
    (ROOT / "configs" / "video-tracking.xml", ROOT / "configs" / "demo" / "ontology-video.json",
     "demo-video-1.mp4"),
    (ROOT / "configs" / "segmentation.xml", ROOT / "configs" / "demo" / "ontology-masks.json",
     "demo-street-3.jpg")])
def test_the_demo_converts_as_its_configs_and_ontologies_say(tmp_path, config, ontology, row):
    """Each demo project's row converts with nothing lost (the attributes are flat per box, as
    image-detection.xml has them), and doctor passes on the config and its ontology. (The
    demo's other rows are for the polygon, keypoint and NER configs.)"""
    report = tmp_path / "losses.jsonl"
    assert run("convert", "lb2ls", "--export", DEMO_EXPORT, "--label-config", config,
               "--out", tmp_path / "t.json", "--report", report).exit_code == 0
    rows = {orjson.loads(x)["data_row"]["id"]: orjson.loads(x)["data_row"]["global_key"]
            for x in DEMO_EXPORT.read_bytes().splitlines()}
    losses = [orjson.loads(x) for x in report.read_bytes().splitlines()]
    assert [x for x in losses if rows[x["data_row"]] == row] == []
    tasks = orjson.loads((tmp_path / "t.json").read_bytes())
    (task,) = [t for t in tasks if t["data"]["global_key"] == row]
    assert task["predictions"][0]["result"]
    result = run("doctor", "--label-config", config, "--ontology", ontology)
    assert result.exit_code == 0, result.output
