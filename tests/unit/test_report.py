"""The conversion report: every loss reaches the sink with its places; the log aggregates."""

from __future__ import annotations

import logging

from labelbridge.model.report import ConversionReport, Loss


def test_scopes_add_the_places_the_loss_does_not_name():
    got: list[Loss] = []
    report = ConversionReport(sink=got.append)
    task = report.scope(task="7", source="a.json[0]")
    task.scope(annotation="9").loss("bbox", "missing", "Car", field="value.x", region="r1")
    task.loss("bbox", "missing", "Car", field="value.x", region="r2", task="8")
    assert [g.as_dict() for g in got] == [
        {"kind": "bbox", "reason": "missing", "feature": "Car", "field": "value.x",
         "region": "r1", "task": "7", "annotation": "9", "source": "a.json[0]"},
        {"kind": "bbox", "reason": "missing", "feature": "Car", "field": "value.x",
         "region": "r2", "task": "8", "source": "a.json[0]"}]


def test_the_log_names_each_kind_and_reason_once_and_the_summary_counts_all(caplog):
    report = ConversionReport()
    for i in range(50):   # the same declared loss on 50 rows, at different indices
        row = ConversionReport(announce=False)
        row.scope(data_row=f"dr{i}").loss("polygon", "missing", "road",
                                          field=f"objects[{i}].polygon[{i}].y")
        report.merge(row)
    with caplog.at_level(logging.WARNING):
        report.merge(ConversionReport())
    direct = ConversionReport()
    with caplog.at_level(logging.WARNING):
        for i in range(50):
            direct.loss("bbox", "missing", "Car", f"dr{i}", field=f"objects[{i}].bounding_box.x")
    assert [r.getMessage().count("bbox") for r in caplog.records].count(1) == 1
    assert report.skipped == {("polygon", "objects[].polygon[].y: missing"): 50}
    assert report.rows() == [("polygon", 0, 50, "objects[].polygon[].y: missing (50)")]
    assert direct.lost == 50


def test_ground_truth_warns_once_per_kind_of_loss_not_per_annotation(caplog):
    import orjson

    from labelbridge.groundtruth.converter import GroundTruthConverter
    from labelbridge.labelstudio.mapping import Overrides
    from labelbridge.labelstudio.webhooks import label_config_hash

    from tests.helpers import IMAGE_CONFIG

    h = label_config_hash(IMAGE_CONFIG)
    conv = GroundTruthConverter(lambda _: IMAGE_CONFIG, Overrides(), lambda d, f: None,
                                lambda: set(), include_relations=False)
    box = {"x": 1, "y": 1, "width": 2, "height": 2}
    result = [{"id": i, "from_name": "label", "to_name": "image", "type": "rectanglelabels",
               "original_width": 10, "original_height": 10,
               "value": {**box, "rectanglelabels": ["Car"]}} for i in ("a", "b")]
    result.append({"from_id": "a", "to_id": "b", "type": "relation", "direction": "right",
                   "labels": ["drives"]})
    with caplog.at_level(logging.WARNING):
        for n in range(5):
            payload = orjson.dumps({"label_config_hash": h, "task": {"id": n, "data": {
                "global_key": f"k{n}"}}, "annotation": {"id": n, "result": result}})
            conv.convert(payload)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "MAL" in warnings[0].getMessage()
    assert conv.losses.lost == 5
