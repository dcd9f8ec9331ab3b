"""Converts a fixed set of rows, intact and damaged, and prints every output (for
tests/unit/test_compiled.py, which runs it once against the compiled install and once against
a copy of the pure-Python source, and compares the two outputs byte for byte).

Usage: python tests/parity_run.py SEED ROWS  (the package comes from ``sys.path``, so the
caller chooses which build runs by PYTHONPATH)
"""

from __future__ import annotations

import copy
import math
import random
import sys
from pathlib import Path

import orjson

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from bench import synthetic  # noqa: E402
from labelbridge import compiled  # noqa: E402
from labelbridge.labelbox.export import Selection, compact_row  # noqa: E402
from labelbridge.labelstudio.mapping import Mapping, Overrides  # noqa: E402
from labelbridge.predictions.converting import RowConverter  # noqa: E402
from tests.helpers import IMAGE_CONFIG, damage_export_row  # noqa: E402

JUNK = [None, True, False, 0, -1, 1.5, -0.0, 1e308, math.nan, math.inf, -math.inf, "", "12",
        "x" * 50, [], [1, 2], {}, {"x": 1}, 2 ** 63 - 1, ...]


def damage(row: dict, rnd: random.Random) -> None:
    damage_export_row(row, rnd.randint(1, 3), rnd.choice, lambda: copy.deepcopy(rnd.choice(JUNK)))


def main(seed: int, count: int) -> None:
    rnd = random.Random(seed)
    rows = {}
    for i in range(count):
        row = synthetic.make_row(i, 6, rnd)
        if i % 2:
            damage(row, rnd)
        picked = compact_row(row, Selection())
        if picked is not None:
            rows[i] = (picked[0], orjson.dumps(picked[1]))
    mapping = Mapping(IMAGE_CONFIG, Overrides.load(None), sorted(synthetic._SCHEMA))
    done = RowConverter(mapping, "parity").batch(rows, sorted(rows))
    out = sys.stdout.buffer
    out.write(f"# {compiled.summary()}\n".encode())
    for pk, prediction in done.prepared:
        out.write(b"%d %s\n" % (pk, prediction))
    for pk, losses in done.losses:
        out.write(b"%d losses %s" % (pk, losses))
    out.write(orjson.dumps(done.report.as_dict(), option=orjson.OPT_SORT_KEYS) + b"\n")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
