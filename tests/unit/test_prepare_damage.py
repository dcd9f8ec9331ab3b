"""Random damage to exported rows never stops preparing predictions: the whole path a prepared
row takes (neutral regions, Label Studio results, the validation, the stored JSON) survives
any value at any place, and the intact rows of the batch come out as they would alone."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from labelbridge.labelbox.export import Selection, compact_row
from labelbridge.labelstudio.mapping import Mapping, Overrides
from labelbridge.predictions.converting import RowConverter

from tests.helpers import IMAGE_CONFIG, bbox, damage_export_row, export_row, radio

# beyond test_export_damage's junk: the numbers that overflow a conversion or a serializer
# (integers as a JSON parser gives them: orjson reads -2**63 .. 2**64-1 as int)
INTS = st.integers(-2 ** 63, 2 ** 64 - 1)
JUNK = st.one_of(st.none(), st.booleans(), INTS,
                 st.sampled_from([1e308, -1e308, 2 ** 63 - 1, 2 ** 53 + 1, 5e-324, -0.0]),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                 st.lists(INTS, max_size=2), st.builds(dict), st.just(...))
MAPPING = Mapping(IMAGE_CONFIG, Overrides.load(None), ["Car", "occluded", "yes", "weather",
                                                        "rainy"])


def _row(i: int) -> dict:
    return export_row([bbox(f"cbox{i}", "Car", 1.5, 2, 30, 40, confidence=0.5,
                            classifications=[radio(f"cocc{i}", "occluded", "yes")])],
                      [radio(f"cw{i}", "weather", "rainy")], data_row_id=f"cdatarow{i:017d}")


def _prepare(rows: list[dict]) -> dict[int, bytes]:
    picked = {i: compact_row(row, Selection()) for i, row in enumerate(rows)}
    stored = {i: (p[0], orjson.dumps(p[1])) for i, p in picked.items() if p is not None}
    return dict(RowConverter(MAPPING, "v1").batch(stored, sorted(stored)).prepared)


INTACT = _prepare([_row(0), _row(1), _row(2)])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_damage_never_stops_a_batch_and_never_changes_another_row(data):
    rows = [_row(i) for i in range(3)]
    victim = rows[1]
    damage_export_row(victim, data.draw(st.integers(1, 3)),
                      lambda places: data.draw(st.sampled_from(places)), lambda: data.draw(JUNK))
    prepared = _prepare(rows)
    assert prepared[0] == INTACT[0] and prepared[2] == INTACT[2]
    if 1 in prepared:
        assert isinstance(orjson.loads(prepared[1]), (dict, list))
