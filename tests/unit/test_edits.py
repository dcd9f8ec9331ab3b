"""The edit report's comparison and figures, against IoUs and outcomes computed by hand."""

from __future__ import annotations

import pytest

from labelbridge.groundtruth.edit_report import EditStore, Served, totals
from labelbridge.groundtruth.edits import compare, overlap
from labelbridge.model.regions import (Answer, Box, Classification, DataRowRef, KeyPoint, Polygon,
                                       Region, Span, TaskRegions)

ROW = DataRowRef(id="cdr")


def occluded(answer: str) -> Classification:
    return Classification("occluded", "radio", (Answer(answer),))


def task(*regions, classifications=()) -> TaskRegions:
    return TaskRegions(ROW, tuple(regions), tuple(classifications))


SQUARE = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))
SERVED = task(
    Region("r1", "Car", Box(10, 20, 100, 50), score=0.9),                 # accepted
    Region("r2", "Car", Box(100, 100, 100, 100)),                          # moved right by 50
    Region("r3", "Person", Box(300, 300, 40, 80)),                         # relabelled
    Region("r4", "Car", Box(400, 50, 20, 20)),                             # deleted
    Region("r6", "road", Polygon(SQUARE)),                                 # moved right by 5
    Region("r7", "Car", Box(0, 400, 30, 30), (occluded("yes"),)),          # answer changed
    Region("r8", "Car", Box(500, 300, 10, 10)),                            # moved and relabelled
    classifications=[Classification("weather", "radio", (Answer("sunny"),), id="g1"),
                     Classification("time", "radio", (Answer("day"),), id="g2")])
ANNOTATED = task(
    Region("r1", "Car", Box(10.2, 20.0, 99.9, 50.1)),        # within half a pixel: unchanged
    Region("r2", "Car", Box(150, 100, 100, 100)),
    Region("r3", "Bicycle", Box(300, 300, 40, 80)),
    Region("r6", "road", Polygon(tuple((x + 5, y) for x, y in SQUARE))),
    Region("r7", "Car", Box(0, 400, 30, 30), (occluded("no"),)),
    Region("r8", "Person", Box(505, 300, 10, 10)),
    Region("m1", "Person", Box(10, 10, 5, 5)),                                # drawn by hand
    classifications=[Classification("weather", "radio", (Answer("rainy"),), id="g1")])


def by_id(edits):
    return {e.region_id: e for e in edits}


def test_each_region_gets_its_outcome():
    edits = by_id(compare(SERVED, ANNOTATED))
    outcomes = {rid: set(e.outcomes) for rid, e in edits.items()}
    assert outcomes == {
        "r1": {"accepted"}, "r2": {"moved"}, "r3": {"relabelled"}, "r4": {"deleted"},
        "r6": {"moved"}, "r7": {"attributes_changed"}, "r8": {"moved", "relabelled"},
        "m1": {"added"}, "g1": {"attributes_changed"}, "g2": {"deleted"}}
    assert edits["r3"].label == "Person" and edits["m1"].label == "Person"   # predicted label
    assert edits["r1"].iou is None                                            # not moved


def test_iou_of_moved_regions_by_hand():
    edits = by_id(compare(SERVED, ANNOTATED))
    # r2: boxes 100x100 shifted by 50: intersection 50*100 = 5000, union 20000 - 5000 = 15000
    assert edits["r2"].iou == pytest.approx(5000 / 15000)
    # r6: 10x10 squares shifted by 5: intersection 50, union 150
    assert edits["r6"].iou == pytest.approx(50 / 150)
    # r8: 10x10 boxes shifted by 5: 50 / 150
    assert edits["r8"].iou == pytest.approx(1 / 3)


@pytest.mark.parametrize("a, b, expected", [
    (Box(0, 0, 10, 10), Box(0, 0, 10, 10, rotation=90), 0.0),   # turned about the top-left corner
    (Box(0, 0, 10, 10), Box(0, 0, 10, 10, rotation=180), 0.0),
    (Box(0, 0, 10, 20), Box(0, 0, 20, 10, rotation=0), 100 / 300),
    (Box(0, 0, 10, 10), Polygon(((0, 0), (10, 0), (0, 10))), 50 / 100),
    (Span(0, 10), Span(5, 15), 5 / 15),                             # characters
    (Span(0, 4), Span(6, 9), 0.0),
    (KeyPoint(1, 1), KeyPoint(3, 1), None),                         # no area
])
def test_overlap(a, b, expected):
    got = overlap(a, b)
    assert got == (None if expected is None else pytest.approx(expected, abs=1e-9))


def test_a_span_moved_by_one_character_is_moved():
    (edit,) = compare(task(Region("e1", "PER", Span(0, 10))),
                      task(Region("e1", "PER", Span(0, 11))))
    assert edit.outcomes == {"moved"} and edit.iou == pytest.approx(10 / 11)


def test_the_report_figures(tmp_path):
    store = EditStore(tmp_path / "edits.sqlite3")
    served = Served("run-1", "crun1", b"{}")
    store.record(1, 10, 3, "cdr", served, compare(SERVED, ANNOTATED))
    # a second annotation of the same version accepts everything
    store.record(2, 11, 3, "cdr2", served, compare(SERVED, SERVED))
    other = Served("run-2", "crun2", b"{}")
    store.record(3, 12, 3, "cdr3", other, compare(task(Region("x", "Car", Box(0, 0, 4, 4))),
                                                  task()))
    s = store.summary("run-1")
    assert s.annotations == 2
    car = next(f for f in s.labels if f.label == "Car").as_dict()
    # Car predicted: r1 r2 r4 r7 r8 in each annotation -> 10; accepted: r1 + all five of #2
    assert car == {"label": "Car", "predicted": 10, "accepted": 6, "moved": 2, "relabelled": 1,
                   "attributes_changed": 1, "deleted": 1, "added": 0, "acceptance_rate": 0.6,
                   "mean_iou_moved": pytest.approx(1 / 3)}
    person = next(f for f in s.labels if f.label == "Person").as_dict()
    assert (person["predicted"], person["accepted"], person["relabelled"], person["added"]) == (
        2, 1, 1, 1)
    total = s.total.as_dict()
    # predicted: 9 per annotation (7 regions + 2 classifications) -> 18; added: m1
    assert (total["predicted"], total["accepted"], total["added"], total["deleted"]) == (
        18, 10, 1, 2)
    assert total["mean_iou_moved"] == pytest.approx(1 / 3)      # r2, r6, r8 all 1/3
    assert store.summary().annotations == 3 and store.versions() == ["run-1", "run-2"]
    assert store.summary("run-2").total.as_dict()["deleted"] == 1
    store.close()
    metrics = totals(tmp_path / "edits.sqlite3")
    assert (metrics["annotations"], metrics["predicted"], metrics["deleted"]) == (3, 19, 3)


def test_a_redelivered_annotation_replaces_its_regions_and_keeps_its_prediction(tmp_path):
    store = EditStore(tmp_path / "edits.sqlite3")
    store.record(1, 10, 3, "cdr", Served("run-1", "crun1", b"first"), compare(SERVED, SERVED))
    store.record(1, 10, 3, "cdr", Served("run-2", "crun2", b"second"), compare(SERVED, task()))
    assert store.served(1) == Served("run-1", "crun1", b"first")
    total = store.summary().total.as_dict()
    assert (total["accepted"], total["deleted"]) == (0, 9)
    assert totals(tmp_path / "missing.sqlite3") == {}
