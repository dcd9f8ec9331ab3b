"""The annotation index and traceability: delivery records, region ids, the queries
reconciliation and label removal ask."""

from __future__ import annotations

import time
from datetime import timedelta

from tests.helpers import raw_rows
from tests.unit.outbox.builders import T0, claim_all, dele, ign, states, ts, up


def test_delivery_records(ob):
    assert ob.delivered_info(1) is None
    ob.append([up(1, 1)])
    ob.record_delivered(1, {"globalKey": "k"}, "imp-1", ["u1", "u2"])
    ob.record_region_ids(1, [("r1", "u1", "cfeat1"), ("r2", "u2", None)])
    ob.record_delivered(1, {"globalKey": "k"}, "imp-2", ["u1"])
    ob.record_region_ids(1, [("r1", "u1", None)])  # keeps the known feature id
    ob.set_label_ids(1, ["L1"])
    info = ob.delivered_info(1)
    assert info["data_row"] == {"globalKey": "k"}
    assert info["imports"] == ["imp-1", "imp-2"]
    assert info["label_ids"] == ["L1"]
    assert info["uuids"] == ["u1"]
    assert info["all_uuids"] == ["u1", "u2"]
    assert info["regions"] == [{"ls_region_id": "r1", "uuid": "u1", "lb_feature_id": "cfeat1"},
                               {"ls_region_id": "r2", "uuid": "u2", "lb_feature_id": None}]
    assert raw_rows(ob, "SELECT annotation_id, ls_region_id, uuid, data_row, lb_feature_id"
                        " FROM region_uuid ORDER BY uuid") == [
        (1, "r1", "u1", '{"globalKey":"k"}', "cfeat1"),
        (1, "r2", "u2", '{"globalKey":"k"}', None)]
    # next claim of this annotation carries the data row
    assert claim_all(ob).items[0].data_row == {"globalKey": "k"}


def test_record_delivered_makes_a_delete_real(ob):
    # crash between record_delivered and mark_delivered: the delete must still go out
    ob.append([up(1, 1)])
    b = claim_all(ob)
    ob.record_delivered(1, {"id": "dr1"}, "imp", ["u"])
    ob.mark_retry([b.items[0].id], "crash", 0)
    ob.append([dele(1)])
    assert states(ob, 1)[-1] == ("delete", "pending", None)


def test_index_queries_used_by_reconciliation_and_delivery(ob):
    ob.append([up(1, 1, task=7, project=1), up(2, 1, task=7, project=1),
               up(3, 1, task=8, project=1), up(4, 1, task=9, project=2), ign(5, 1, task=8),
               dele(3)])
    assert ob.projects() == [1, 2]
    assert ob.task_annotations(7) == [1, 2]
    assert ob.task_annotations(8) == [5]  # 3 was deleted
    assert ob.is_deleted(3) and not ob.is_deleted(1) and not ob.is_deleted(99)
    assert ob.live_annotations(1) == [(1, 7), (2, 7), (5, 8)]
    # delivery windows: from the stored import name to the recorded delivery
    assert ob.import_windows(1) == [] and not ob.sole_delivered_on_task(1)
    b = ob.claim_batch(1)
    t0 = time.time()
    ob.set_import_name(b.id, "imp-a")
    ob.record_delivered(1, {"id": "dr7"}, "imp-a", ["u"])
    t1 = time.time()
    ob.mark_delivered([b.items[0].id], b.id)
    ((start, end),) = ob.import_windows(1)
    assert t0 <= start <= end <= t1
    assert ob.sole_delivered_on_task(1)
    ob.record_delivered(2, {"id": "dr7"}, "file-import", [])  # a name without a batch
    ((s2, e2),) = ob.import_windows(2)
    assert s2 == e2
    assert not ob.sole_delivered_on_task(1) and not ob.sole_delivered_on_task(2)


def test_has_seen_and_known_annotations(ob):
    ob.append([up(1, 1, project=1), up(1, 3, project=1), up(1, 2, project=1),
               up(2, 1, project=1), up(3, 1, project=2), ign(4, 7), up(5, 1), dele(5)])
    assert ob.has_seen(1, ts(2))
    assert ob.has_seen(1, (T0 + timedelta(seconds=3)).isoformat())  # another spelling
    assert not ob.has_seen(1, ts(4))
    assert ob.known_annotations(1) == {1: ts(3), 2: ts(1), 4: ts(7)}
    assert ob.known_annotations(2) == {3: ts(1)}
