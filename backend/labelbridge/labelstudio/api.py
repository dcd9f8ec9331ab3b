"""The Label Studio REST calls labelbridge makes, through label-studio-sdk.

Used by reconciliation (tasks with annotations changed since a cursor; which tasks still
exist), by ``labelbridge connect`` (ML backend and webhook wiring), by ``labelbridge doctor``
(the project's label config) and by ``labelbridge refresh-predictions`` (the project's model
version, predictions per task).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from label_studio_sdk import LabelStudio, PredictionRequest
from label_studio_sdk.core.api_error import ApiError

WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED",
                   "ANNOTATIONS_DELETED"]


class LabelStudioUnavailable(RuntimeError):
    """Label Studio could not be reached or refused the request; the message says why.
    ``status`` is the HTTP status Label Studio answered with, None when it did not answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _dump(obj: Any) -> dict:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


def _unavailable(url: str, exc: Exception) -> LabelStudioUnavailable:
    if isinstance(exc, ApiError):
        body = exc.body if isinstance(exc.body, (str, dict)) else ""
        return LabelStudioUnavailable(f"Label Studio at {url} answered {exc.status_code}: {body}",
                                      exc.status_code)
    return LabelStudioUnavailable(f"Label Studio at {url} is unreachable: "
                                  f"{exc.__class__.__name__}: {exc}")


class LabelStudioApi:
    def __init__(self, url: str, api_key: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        try:
            self.ls = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout)
        except Exception as exc:
            raise _unavailable(self.url, exc) from exc

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _unavailable(self.url, exc) from exc

    # ----- reading ------------------------------------------------------------------------
    def project(self, project_id: int) -> dict:
        return _dump(self._call(self.ls.projects.get, id=project_id))

    def label_config(self, project_id: int) -> str:
        """The project's label config XML ("" when it has none), in one attempt: no retries."""
        project = self._call(self.ls.projects.get, id=project_id,
                             request_options={"max_retries": 0})
        return str(getattr(project, "label_config", None) or "")

    def tasks(self, project_id: int, updated_since: str | None = None,
              page_size: int = 100) -> Iterator[dict]:
        """Tasks with their annotations, oldest update first; only those updated after
        ``updated_since`` (ISO time) when given. Every annotation change updates its task."""
        query: dict[str, Any] = {"ordering": ["tasks:updated_at"]}
        if updated_since:
            query["filters"] = {"conjunction": "and", "items": [{
                "filter": "filter:tasks:updated_at", "operator": "greater",
                "type": "Datetime", "value": updated_since}]}
        return self._tasks(project_id, query, page_size)

    def _tasks(self, project_id: int, query: dict, page_size: int) -> Iterator[dict]:
        pager = self._call(self.ls.tasks.list, project=project_id, fields="all",
                           page_size=page_size, query=json.dumps(query))
        try:
            for task in pager:
                yield _dump(task)
        except Exception as exc:
            raise _unavailable(self.url, exc) from exc

    def task_ids(self, project_id: int, page_size: int = 1000) -> set[int]:
        pager = self._call(self.ls.tasks.list, project=project_id, page_size=page_size,
                           include="id")
        try:
            return {int(_dump(t)["id"]) for t in pager}
        except Exception as exc:
            raise _unavailable(self.url, exc) from exc

    # ----- projects and tasks (make demo: create, import, "Retrieve Predictions") ---------
    def projects(self) -> list[dict]:
        return [_dump(p) for p in self._call(lambda: list(self.ls.projects.list()))]

    def task_data(self, project_id: int) -> list[dict]:
        """Every task of the project: ``{"id", "data", "total_predictions"}``."""
        pager = self._call(self.ls.tasks.list, project=project_id, page_size=1000)
        try:
            return [{"id": t["id"], "data": t.get("data") or {},
                     "total_predictions": t.get("total_predictions") or 0}
                    for t in map(_dump, pager)]
        except Exception as exc:
            raise _unavailable(self.url, exc) from exc

    def create_project(self, title: str, label_config: str) -> dict:
        return _dump(self._call(self.ls.projects.create, title=title, label_config=label_config))

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        answer = self._call(self.ls.projects.import_tasks, id=project_id, request=tasks,
                            return_task_ids=True)
        return list(answer.task_ids or [])

    def retrieve_predictions(self, project_id: int) -> None:
        """The Data Manager's "Retrieve Predictions" on every task of the project."""
        self._call(self.ls.actions.create, id="retrieve_tasks_predictions", project=project_id,
                   selected_items={"all": True, "excluded": []})

    # ----- wiring (connect) ---------------------------------------------------------------
    def ml_backends(self, project_id: int) -> list[dict]:
        return [_dump(b) for b in self._call(self.ls.ml.list, project=project_id)]

    def add_ml_backend(self, project_id: int, url: str, title: str, interactive: bool = False,
                       **auth: Any) -> dict:
        return _dump(self._call(self.ls.ml.create, project=project_id, url=url, title=title,
                                is_interactive=interactive, **auth))

    def update_ml_backend(self, backend_id: int, project_id: int, url: str, **fields: Any) -> dict:
        # A partial PATCH answers 500 in Label Studio 1.23: always send url and project.
        return _dump(self._call(self.ls.ml.update, backend_id, project=project_id, url=url,
                                **fields))

    def webhooks(self, project_id: int) -> list[dict]:
        return [_dump(w) for w in self._call(self.ls.webhooks.list, project=str(project_id))]

    def add_webhook(self, project_id: int, url: str, headers: dict[str, str]) -> dict:
        return _dump(self._call(self.ls.webhooks.create, project=project_id, url=url,
                                headers=headers, send_payload=True, send_for_all_actions=False,
                                actions=WEBHOOK_ACTIONS, is_active=True))

    def update_webhook(self, webhook_id: int, url: str, headers: dict[str, str],
                       actions: list[str] | None) -> dict:
        fields: dict[str, Any] = {"url": url, "headers": headers, "send_payload": True,
                                  "is_active": True}
        if actions is None:
            fields["send_for_all_actions"] = True
        else:
            fields.update(send_for_all_actions=False, actions=actions)
        return _dump(self._call(self.ls.webhooks.update, webhook_id, **fields))

    # ----- predictions (refresh-predictions) ----------------------------------------------
    def tasks_after(self, project_id: int, after_id: int = 0,
                    page_size: int = 100) -> Iterator[dict]:
        """The project's tasks with ids above ``after_id``, in id order, with their
        predictions and annotation counts."""
        query = {"ordering": ["tasks:id"], "filters": {"conjunction": "and", "items": [{
            "filter": "filter:tasks:id", "operator": "greater", "type": "Number",
            "value": after_id}]}}
        return self._tasks(project_id, query, page_size)

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """The version whose predictions Label Studio shows annotators first."""
        self._call(self.ls.projects.update, id=project_id, model_version=model_version)

    def import_predictions(self, project_id: int, predictions: list[dict]) -> None:
        """Create predictions in one call: ``{"task", "result", "score", "model_version"}``."""
        if predictions:
            self._call(self.ls.projects.import_predictions, id=project_id,
                       request=[PredictionRequest(**p) for p in predictions])

    def delete_prediction(self, prediction_id: int) -> None:
        self._call(self.ls.predictions.delete, id=prediction_id)
