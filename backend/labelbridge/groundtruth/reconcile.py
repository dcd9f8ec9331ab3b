"""Reconciliation: find through the Label Studio API what webhooks did not bring.

Label Studio sends each webhook once; whatever happened while the bridge was down is only in
Label Studio. Every annotation change (create, update, delete, bulk create) updates its task's
``updated_at``, so paging through tasks updated since a stored cursor finds new and changed
annotations, and annotations that vanished from a task that was seen. Deleted tasks take their
annotations with them without any event; a scan of the project's task ids finds those.
With several replicas the periodic pass runs on one at a time (``jobs``, an advisory lock).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from labelbridge.groundtruth.outbox import IncomingEvent, Outbox, parse_timestamp
from labelbridge.labelstudio import webhooks
from labelbridge.labelstudio.api import LabelStudioApi, LabelStudioUnavailable
from labelbridge.postgres import Solo
from labelbridge.postgres.once import Jobs

log = logging.getLogger(__name__)
SLACK = timedelta(minutes=2)  # re-read a little before the cursor: clocks and open transactions


@dataclass
class ReconcileResult:
    project_id: int
    tasks_read: int = 0
    upserts: int = 0
    deletes: int = 0
    duplicates: int = 0   # annotation versions the outbox already had: not queued again


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso(v) for v in value]
    return value


def _cursor_key(project_id: int) -> str:
    return f"reconcile:project:{project_id}"


class Reconciler:
    def __init__(self, outbox: Outbox, api: LabelStudioApi, jobs: Jobs | None = None) -> None:
        self.outbox = outbox
        self.api = api
        self.jobs = jobs or Solo()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def projects(self, configured: int | None) -> list[int]:
        return [configured] if configured else self.outbox.projects()

    def run(self, project_id: int, full: bool = False) -> ReconcileResult:
        result = ReconcileResult(project_id)
        project = self.api.project(project_id)
        label_config = project.get("label_config") or ""
        config_hash = webhooks.label_config_hash(label_config)
        self.outbox.put_label_config(config_hash, label_config)
        project_ref = {"id": project_id, "label_config": label_config}
        cursor = None if full else self.outbox.get_cursor(_cursor_key(project_id))
        since = None
        if cursor:  # Label Studio's date filter reads exactly this format
            start = datetime.fromisoformat(cursor).astimezone(timezone.utc) - SLACK
            since = start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        newest = cursor
        events: list[IncomingEvent] = []
        for task in self.api.tasks(project_id, updated_since=since):
            task = _iso(task)
            result.tasks_read += 1
            events.extend(self._task_events(task, project_ref, config_hash, result))
            stamp = task.get("updated_at")
            if isinstance(stamp, str) and (newest is None or
                                           parse_timestamp(stamp) > parse_timestamp(newest)):
                newest = stamp
        events.extend(self._deleted_task_events(project_id))
        if events:
            appended = self.outbox.append(events)
            result.duplicates += appended.duplicates
        result.upserts = sum(1 for e in events if e.kind == "upsert")
        result.deletes = sum(1 for e in events if e.kind == "delete")
        if newest:
            self.outbox.set_cursor(_cursor_key(project_id), newest)
        log.info("reconciled project %d: %d tasks read, %d upserts and %d deletes queued "
                 "(%d already known)", project_id, result.tasks_read, result.upserts,
                 result.deletes, result.duplicates)
        return result

    def _task_events(self, task: dict, project_ref: dict, config_hash: str,
                     result: ReconcileResult) -> list[IncomingEvent]:
        events = []
        live: set[int] = set()
        task_ref = {"id": task["id"], "data": task.get("data") or {}}
        for ann in task.get("annotations") or []:
            if not isinstance(ann, dict) or not isinstance(ann.get("id"), int):
                continue
            live.add(ann["id"])
            ann = {**ann, "task": task["id"]}
            updated = ann.get("updated_at") or ann.get("created_at")
            created = ann.get("created_at") if isinstance(ann.get("created_at"), str) else None
            if isinstance(updated, str) and self.outbox.has_seen(ann["id"], updated, created):
                result.duplicates += 1
                continue
            body = {"action": "ANNOTATION_UPDATED", "annotation": ann, "task": task_ref,
                    "project": project_ref}
            try:
                (change,) = webhooks.parse(body).changes
            except webhooks.WebhookError as exc:
                log.warning("annotation %s of task %s cannot be read: %s", ann.get("id"),
                            task["id"], exc)
                continue
            events.append(self._event(change, config_hash))
        for annotation_id in self.outbox.task_annotations(task["id"], project_ref["id"]):
            if annotation_id not in live:
                events.append(IncomingEvent("delete", annotation_id, project_ref["id"],
                                            task["id"], None, b"", "reconcile"))
        return events

    def _deleted_task_events(self, project_id: int) -> list[IncomingEvent]:
        known = self.outbox.live_annotations(project_id)
        if not known:
            return []
        existing = self.api.task_ids(project_id)
        return [IncomingEvent("delete", annotation_id, project_id, task_id, None, b"",
                              "reconcile", reason="its task was deleted")
                for annotation_id, task_id in known if task_id not in existing]

    @staticmethod
    def _event(change: webhooks.AnnotationChange, config_hash: str) -> IncomingEvent:
        return IncomingEvent(change.kind, change.annotation_id, change.project_id,  # type: ignore[arg-type]
                             change.task_id, change.updated_at, change.payload, "reconcile",
                             change.reason, config_hash, change.created_at)

    # ----- periodic job -------------------------------------------------------------------
    def start(self, interval: float, configured_project: int | None) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.run_once(configured_project)
                except Exception:   # the shared store failed: try again next round
                    log.exception("reconciliation failed")
        self._thread = threading.Thread(target=loop, name="reconcile", daemon=True)
        self._thread.start()

    def run_once(self, configured_project: int | None) -> bool:
        """One periodic pass over the projects, unless another replica runs one now."""
        with self.jobs.attempt("reconcile") as mine:
            if not mine:
                log.debug("reconciliation: another replica is running it")
                return False
            for pid in self.projects(configured_project):
                try:
                    self.run(pid)
                except LabelStudioUnavailable as exc:
                    log.warning("reconciliation of project %d skipped: %s", pid, exc)
                except Exception:
                    log.exception("reconciliation of project %d failed", pid)
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
