"""Index build: the feature names it collects and what a bad export leaves behind."""

import random
import sqlite3

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.indexer import index_export
from backend.labelbox.export import ExportError, FeatureNames, Selection, feature_names
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
