"""Prepare workers receive the predictor's converter built, pickled without label-studio-sdk's
parse of the label config: it converts to the same bytes, and the SDK is parsed (and imported)
only when a row needs its verdict."""

from __future__ import annotations

import pickle
import random
import subprocess
import sys
from collections import Counter

import orjson

from labelbridge.labelbox.export import Selection, compact_row
from labelbridge.labelstudio.mapping import Mapping, Overrides
from labelbridge.predictions.converting import RowConverter

from bench.synthetic import make_row
from tests.helpers import IMAGE_CONFIG

OVERRIDES = Overrides.from_dict({"classifications": [  # Labelbox's yes is Label Studio's no
    {"labelbox": "occluded", "control": "occluded", "answers": {"yes": "no", "no": "yes"}}]})


def _rows(n: int = 30) -> dict[int, tuple[str | None, bytes]]:
    """Export rows as the index keeps them (boxes, polygons, points, per-region answers nested
    three deep, global answers), keyed like row offsets."""
    rnd = random.Random(7)
    out = {}
    for i in range(n):
        origin, compact = compact_row(make_row(i, 6, rnd), Selection())
        out[i * 1000] = (origin, orjson.dumps(compact))
    return out


def _converter(overrides: Overrides = OVERRIDES) -> RowConverter:
    names = ["Person", "Car", "road", "occluded", "note"]  # Labelbox's spellings
    return RowConverter(Mapping(IMAGE_CONFIG, overrides, names), "v1")


def _occluded(prepared: list[tuple[int, bytes]]) -> Counter:
    return Counter(r["value"]["choices"][0] for _, p in prepared
                   for r in orjson.loads(p)["result"] if r["from_name"] == "occluded")


def test_a_pickled_converter_converts_alike_without_the_sdk():
    original, rows = _converter(), _rows()
    copy = pickle.loads(pickle.dumps(original))
    assert not copy.mapping.config.parsed
    a, b = original.batch(rows, list(rows)), copy.batch(rows, list(rows))
    assert a.prepared and a.prepared == b.prepared and a.losses == b.losses
    assert dict(a.report.converted) == dict(b.report.converted)
    plain = _occluded(_converter(Overrides()).batch(rows, list(rows)).prepared)
    assert _occluded(b.prepared) == {"yes": plain["no"], "no": plain["yes"]} != plain  # the
    # mapping file went along
    assert copy.mapping.problems == original.mapping.problems
    assert not copy.check.config.parsed                           # plain rows: never parsed


def test_a_pickled_check_asks_the_sdk_when_its_table_cannot_decide():
    original = _converter()
    copy = pickle.loads(pickle.dumps(original))
    bad = [{"id": "x", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "value": {"x": 1, "y": 2, "width": 3, "height": 400, "rectanglelabels": ["Car"]}}]
    assert copy.check.check({"result": bad}) == original.check.check({"result": bad}) != []
    assert copy.check.config.parsed


def test_a_worker_starts_without_the_heavy_imports():
    """label-studio-sdk (~0.4 s of CPU) and numpy (~50 ms and a BLAS thread per CPU) load only
    when a row needs them."""
    heavy = ("label_studio_sdk", "numpy", "labelbox", "pydantic")
    code = ("import sys, labelbridge.predictions.prepare_worker; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
