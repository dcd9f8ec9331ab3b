"""Removing the labels an annotation's imports created: when it is deleted, when an update
left nothing to import, and (for a sink that does not replace by uuid) the earlier label after
an update was imported again."""

from __future__ import annotations

import logging
from typing import Callable

from labelbridge.groundtruth.converter import GroundTruth
from labelbridge.groundtruth.outbox import Outbox, WorkItem, ls_annotation_id
from labelbridge.model.sink import LabelRef, PermanentError, Sink, TransientError

log = logging.getLogger(__name__)
CLOCK_SLACK = 5.0   # seconds of clock difference tolerated when matching labels to imports


class Removal:
    def __init__(self, outbox: Outbox, sink: Sink,
                 retry: Callable[[list[WorkItem], str], None]) -> None:
        self.outbox = outbox
        self.sink = sink
        self.retry = retry

    def _owned_by(self, annotation_id: int, keep_newest: bool = False
                  ) -> Callable[[list[LabelRef]], list[str]]:
        """Which of our labels on a data row (oldest first) came from this annotation.

        When the annotation is the only one of its task Labelbox got, all of them; otherwise
        those created within one of its imports. ``keep_newest`` spares the newest label: the
        one the import that just finished created (imports run one at a time).
        """
        windows = self.outbox.import_windows(annotation_id)
        sole = self.outbox.sole_delivered_on_task(annotation_id)

        def choose(labels: list[LabelRef]) -> list[str]:
            if keep_newest:
                labels = labels[:-1]
            return [label.id for label in labels
                    if sole or any(start - CLOCK_SLACK <= label.created_at <= end + CLOCK_SLACK
                                   for start, end in windows)]
        return choose

    def earlier_labels(self, item: WorkItem, data_row: dict, earlier: dict) -> None:
        """After an update was imported: remove what the annotation's earlier imports left."""
        removed = self.sink.remove_labels(earlier.get("data_row") or data_row,
                                          self._owned_by(item.annotation_id, keep_newest=True),
                                          ls_annotation_id(item.annotation_id),
                                          earlier.get("uuids") or [])
        if removed:
            log.info("annotation %s: removed earlier labels %s", item.annotation_id, removed)

    def delete(self, item: WorkItem, batch_id: int) -> bool:
        """True when nothing of the deleted annotation is left in Labelbox (False: retried or
        dead)."""
        info = self.outbox.delivered_info(item.annotation_id)
        if info is None or not info.get("data_row"):
            self.outbox.mark_skipped([item.id], "nothing of this annotation reached Labelbox")
            return True
        removed = self._remove_owned(item, info["data_row"], info["all_uuids"])
        if removed is None:
            return False
        self.outbox.set_label_ids(item.annotation_id, removed)
        self.outbox.mark_delivered([item.id], batch_id)
        log.info("annotation %s deleted: removed labels %s", item.annotation_id, removed)
        return True

    def emptied(self, item: WorkItem, gt: GroundTruth) -> bool:
        """An annotation with nothing to import: remove what an earlier version put there.
        True when that is done (False: retried or dead)."""
        info = self.outbox.delivered_info(item.annotation_id)
        if info is None:
            self.outbox.mark_skipped([item.id], "the annotation has no regions Labelbox can "
                                     "import")
            return True
        if self._remove_owned(item, gt.data_row, info["all_uuids"]) is None:
            return False
        self.outbox.mark_skipped([item.id], "emptied: earlier labels removed")
        return True

    def _remove_owned(self, item: WorkItem, data_row: dict, uuids: list[str]) -> list[str] | None:
        """Remove the labels this annotation's imports created (their ids); None when that
        failed, and the item is then retried or dead."""
        try:
            return self.sink.remove_labels(data_row, self._owned_by(item.annotation_id),
                                           ls_annotation_id(item.annotation_id), uuids)
        except TransientError as exc:
            self.retry([item], str(exc))
        except PermanentError as exc:
            self.outbox.mark_failed([item.id], str(exc))
        return None
