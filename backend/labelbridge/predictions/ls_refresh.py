"""``labelbridge refresh-predictions``: one live prediction per task, of the served version.

Label Studio never asks the backend again for a task that already has a prediction (of any
version, in the label stream), so after a newer run is served its tasks keep the old
predictions. This pass sets the project's model version to the served one, and for every task
without annotations removes the predictions of other versions this bridge served (and
duplicates of the current one) and writes the current prediction. Tasks with annotations are
left alone unless asked; annotations are never touched. Pages are processed in task id order
and the last finished page is kept in a cursor file, so an interrupted pass resumes there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson

from labelbridge.labelstudio.api import LabelStudioApi, LabelStudioUnavailable
from labelbridge.predictions.predictor import NO_PREDICTION, Predictor

log = logging.getLogger(__name__)
SHOWN_CHANGES = 20  # per-task lines a dry run prints


@dataclass
class RefreshSummary:
    model_version: str
    tasks: int = 0
    annotated: int = 0       # left alone (no --include-annotated)
    removed: int = 0         # predictions removed
    written: int = 0         # predictions written
    up_to_date: int = 0      # already had exactly the current prediction
    without_prediction: int = 0  # the served index has nothing for the task
    resumed_after: int = 0   # task id a previous pass had finished
    project_version: str | None = None   # the project's model version before the pass
    version_not_set: str | None = None   # why it was not set to the current one
    changes: list[str] = field(default_factory=list)


def _pages(tasks: Iterable[dict], size: int) -> Iterator[list[dict]]:
    page: list[dict] = []
    for task in tasks:
        page.append(task)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _annotated(task: dict) -> bool:
    return bool((task.get("total_annotations") or 0) + (task.get("cancelled_annotations") or 0)
                or task.get("annotations"))


class PredictionRefresher:
    def __init__(self, api: LabelStudioApi, predictor: Predictor, project_id: int,
                 ours: Iterable[str], cursor: Path, *, include_annotated: bool = False,
                 dry_run: bool = False, page_size: int = 100) -> None:
        """``ours``: every model version this bridge has served (their predictions may go)."""
        self.api, self.predictor, self.project_id = api, predictor, project_id
        self.version = predictor.model_version
        self.ours = set(ours) | {self.version}
        self.cursor, self.page_size = cursor, page_size
        self.include_annotated, self.dry_run = include_annotated, dry_run

    def run(self, progress: Callable[[int], None] | None = None) -> RefreshSummary:
        summary = RefreshSummary(self.version)
        project = self.api.project(self.project_id)
        label_config = project.get("label_config") or ""
        summary.project_version = project.get("model_version")
        after = self._resume_point()
        summary.resumed_after = after
        for page in _pages(self.api.tasks_after(self.project_id, after, self.page_size),
                           self.page_size):
            self._page(page, label_config, summary)
            if not self.dry_run:
                self.cursor.write_text(str(page[-1]["id"]))
            if progress:
                progress(summary.tasks)
        if not self.dry_run:
            self.cursor.unlink(missing_ok=True)  # done: the next pass starts from the top
            if summary.project_version != self.version:
                self._set_version(summary)
        return summary

    def _set_version(self, summary: RefreshSummary) -> None:
        """Label Studio accepts a project model version only once a prediction of it (or an
        ML backend of that title) exists in the project: so this comes last."""
        try:
            self.api.set_model_version(self.project_id, self.version)
        except LabelStudioUnavailable as exc:
            summary.version_not_set = str(exc)

    def _resume_point(self) -> int:
        try:
            return int(self.cursor.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def _page(self, page: list[dict], label_config: str, summary: RefreshSummary) -> None:
        remove: list[tuple[int, dict]] = []
        write: list[dict] = []
        for task in page:
            summary.tasks += 1
            if _annotated(task) and not self.include_annotated:
                summary.annotated += 1
                continue
            preds = task.get("predictions") or []
            current = [p for p in preds if p.get("model_version") == self.version]
            stale = [p for p in preds if p.get("model_version") in self.ours
                     and p.get("model_version") != self.version] + current[1:]
            remove += [(task["id"], p) for p in stale]
            if current:
                if not stale:
                    summary.up_to_date += 1
            else:
                write.append(task)
        fresh = self._predictions(write, label_config, summary)
        by_task = {p["task"]: p for p in fresh}
        for task_id, pred in remove:
            self._note(summary, f"task {task_id}: remove prediction {pred['id']} "
                                f"({pred.get('model_version')})")
        for task_id in by_task:
            self._note(summary, f"task {task_id}: write a prediction of {self.version}")
        summary.removed += len(remove)
        summary.written += len(fresh)
        if self.dry_run:
            return
        self.api.import_predictions(self.project_id, fresh)  # first: a task is never left bare
        for _, pred in remove:
            self.api.delete_prediction(pred["id"])

    def _predictions(self, tasks: list[dict], label_config: str,
                     summary: RefreshSummary) -> list[dict]:
        if not tasks:
            return []
        out = []
        for task, item in zip(tasks, self.predictor.predict(tasks, label_config)):
            if item == NO_PREDICTION:
                summary.without_prediction += 1
                continue
            pred = orjson.loads(item)
            out.append({"task": task["id"], "result": pred["result"], "score": pred.get("score"),
                        "model_version": pred["model_version"]})
        return out

    @staticmethod
    def _note(summary: RefreshSummary, line: str) -> None:
        if len(summary.changes) < SHOWN_CHANGES:
            summary.changes.append(line)
