"""Reconciliation over a real outbox (SQLite and PostgreSQL), Label Studio's API replaced at
its network seam.

The fake answers the three calls ``Reconciler`` makes with bodies shaped like Label Studio
1.23's (taken from ``tests/fixtures/ls-captures``); the real thing runs in tests/e2e.
"""

from __future__ import annotations

import copy
import json

from labelbridge.groundtruth.outbox import Outbox
from labelbridge.groundtruth.reconcile import Reconciler
from tests.helpers import ROOT

CAPTURE = ROOT / "tests/fixtures/ls-captures/e2e-flow/project-webhook_ANNOTATION_CREATED.json"
BODY = json.loads(CAPTURE.read_text())["json"]
CONFIG = BODY["project"]["label_config"]


def annotation(ann_id: int, task_id: int, updated_at: str) -> dict:
    ann = copy.deepcopy(BODY["annotation"])
    ann.update(id=ann_id, task=task_id, created_at=updated_at, updated_at=updated_at)
    return ann


class FakeLabelStudio:
    """``project``, ``tasks`` and ``task_ids`` of :class:`LabelStudioApi`, from a dict."""

    def __init__(self, tasks: dict[int, list[dict]]) -> None:
        self.by_task = tasks

    def project(self, project_id: int) -> dict:
        return {"id": project_id, "label_config": CONFIG}

    def tasks(self, project_id: int, updated_since: str | None = None):
        for task_id, anns in self.by_task.items():
            yield {"id": task_id, "data": {"image": f"http://127.0.0.1:9/{task_id}.jpg"},
                   "updated_at": max((a["updated_at"] for a in anns), default=None),
                   "annotations": anns}

    def task_ids(self, project_id: int) -> set[int]:
        return set(self.by_task)


def test_a_second_run_counts_what_it_already_knew(outbox_location):
    ls = FakeLabelStudio({1: [annotation(11, 1, "2026-11-22T12:10:10.000001Z")],
                          2: [annotation(12, 2, "2026-11-22T12:10:11.000001Z"),
                              annotation(13, 2, "2026-11-22T12:10:12.000001Z")]})
    with Outbox(outbox_location) as outbox:
        reconciler = Reconciler(outbox, ls)  # type: ignore[arg-type]
        first = reconciler.run(7)
        assert (first.tasks_read, first.upserts, first.deletes, first.duplicates) == (2, 3, 0, 0)
        again = reconciler.run(7, full=True)
        # was "(0 already known)" on every run: the versions it skipped were not counted
        assert (again.upserts, again.deletes, again.duplicates) == (0, 0, 3)


def test_a_changed_annotation_is_queued_and_the_rest_counted_as_known(outbox_location):
    ls = FakeLabelStudio({1: [annotation(11, 1, "2026-11-22T12:10:10.000001Z")],
                          2: [annotation(12, 2, "2026-11-22T12:10:11.000001Z")]})
    with Outbox(outbox_location) as outbox:
        reconciler = Reconciler(outbox, ls)  # type: ignore[arg-type]
        reconciler.run(7)
        ls.by_task[2] = [annotation(12, 2, "2026-11-22T12:20:00.000001Z")]
        again = reconciler.run(7, full=True)
        assert (again.upserts, again.duplicates) == (1, 1)
