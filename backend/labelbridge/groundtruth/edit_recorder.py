"""The delivery hook of the edit report: each delivered annotation is compared with the
prediction served for its task and the outcome stored (``edit_report.EditStore``).

The served prediction is the task's row in the prediction index, written and read back through
the same mapping as the annotation (so both sides hold what Label Studio showed, in Labelbox
names). The first delivery of an annotation keeps that row; later ones compare with it again.
An annotation is compared only when it shares a region id with the prediction, or when it was
made from a prediction (``parent_prediction``) and deleted everything: otherwise it was not
made from this prediction (drawn from scratch, or from an older run's) and is counted apart.
"""

from __future__ import annotations

import logging
from typing import Callable

import orjson

from labelbridge.groundtruth.converter import GroundTruth
from labelbridge.groundtruth.edit_report import EditStore, Served
from labelbridge.groundtruth.edits import compare
from labelbridge.groundtruth.outbox import Delivery
from labelbridge.labelbox.export import task_regions
from labelbridge.labelstudio.results import ResultReader, ResultWriter
from labelbridge.model.regions import TaskRegions
from labelbridge.model.report import ConversionReport

log = logging.getLogger(__name__)
# data row ({"id"} or {"globalKey"}) -> (model version, run id, compact index row) served for it
ServedLookup = Callable[[dict], "tuple[str, str | None, bytes] | None"]


class EditRecorder:
    def __init__(self, store: EditStore, lookup: ServedLookup, close_loop: bool = False) -> None:
        self.store, self.lookup, self.close_loop = store, lookup, close_loop
        self.unmatched = 0   # delivered annotations not made from the served prediction

    def __call__(self, delivered: list[tuple[Delivery, GroundTruth]]) -> None:
        for done, gt in delivered:
            try:
                self.record(done.annotation_id, gt)
            except Exception:  # the report must never stop delivery
                log.exception("annotation %s: not added to the edit report", done.annotation_id)

    def deleted(self, annotation_ids: list[int]) -> None:
        """Deleted annotations (their deletion reached Labelbox) leave the report."""
        self.store.forget(annotation_ids)

    def record(self, annotation_id: int, gt: GroundTruth) -> bool:
        """True when the comparison was stored."""
        if gt.task_regions is None or gt.mapping is None or gt.stored is None:
            return False
        served = self.store.served(annotation_id)
        if served is None:
            found = self.lookup(gt.data_row)
            if found is None:
                return False   # nothing was served for this task
            served = Served(*found)
        predicted = self._as_shown(served.payload, gt)
        if not _made_from(predicted, gt.task_regions,
                          gt.stored.annotation.get("parent_prediction") is not None):
            self.unmatched += 1
            log.info("annotation %s was not made from the served prediction (version %s): "
                     "not in the edit report", annotation_id, served.model_version)
            return False
        data_row = orjson.loads(served.payload)["data_row"]
        self.store.record(annotation_id, gt.stored.task.get("id"), gt.stored.project_id,
                          data_row.get("id"), served, compare(predicted, gt.task_regions),
                          loop=self.close_loop)
        return True

    @staticmethod
    def _as_shown(payload: bytes, gt: GroundTruth) -> TaskRegions:
        report = ConversionReport()
        tr = task_regions(orjson.loads(payload), report)
        result = ResultWriter(gt.mapping, report).write(tr)  # type: ignore[arg-type]
        return ResultReader(gt.mapping, report).read(result, tr.data_row)  # type: ignore[arg-type]


def _ids(tr: TaskRegions) -> set[str]:
    return {r.id for r in tr.regions} | {c.id for c in tr.classifications if c.id}


def _made_from(predicted: TaskRegions, annotated: TaskRegions, from_prediction: bool) -> bool:
    if _ids(predicted) & _ids(annotated):
        return True
    return from_prediction and not _ids(annotated)
