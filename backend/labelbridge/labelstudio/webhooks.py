"""Label Studio webhook bodies -> outbox events.

Label Studio facts handled here: the envelope is ``{"action", <object or list>, "project"}``;
``ANNOTATIONS_CREATED`` carries lists of annotations and tasks; ``ANNOTATIONS_DELETED`` carries
ids only; a skipped task is an annotation with ``was_cancelled: true``; the embedded project
holds secrets (``token``, ``task_data_password``) that must never be stored or logged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

UPSERT_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"}
DELETE_ACTIONS = {"ANNOTATIONS_DELETED"}
PROJECT_SECRETS = ("token", "task_data_login", "task_data_password")
# What we keep of an annotation: enough to convert it and to trace it back.
ANNOTATION_FIELDS = ("id", "result", "was_cancelled", "ground_truth", "created_at", "updated_at",
                     "task", "project", "completed_by", "updated_by", "parent_prediction",
                     "parent_annotation", "unique_id", "lead_time")


class WebhookError(ValueError):
    """A webhook body Label Studio would not send; ``loc`` names the field."""

    def __init__(self, loc: list, msg: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {msg}")
        self.loc = loc
        self.msg = msg

    def detail(self) -> list[dict]:
        return [{"loc": ["body", *self.loc], "msg": self.msg, "type": "value_error"}]


@dataclass(frozen=True)
class AnnotationChange:
    """One annotation event, format-free enough for the outbox."""

    kind: str                      # "upsert" | "delete" | "ignored"
    annotation_id: int
    project_id: int | None
    task_id: int | None
    updated_at: str | None
    payload: bytes = b""
    reason: str | None = None
    created_at: str | None = None     # tells a new annotation from an old one whose id it reuses


@dataclass
class ParsedWebhook:
    action: str
    project_id: int | None
    label_config: str | None
    changes: list[AnnotationChange] = field(default_factory=list)
    ignored_reason: str | None = None


def strip_secrets(body: Any) -> Any:
    """A copy of a webhook body safe to store or log: project secrets removed."""
    if not isinstance(body, dict):
        return body
    clean = dict(body)
    project = clean.get("project")
    if isinstance(project, dict):
        clean["project"] = {k: v for k, v in project.items() if k not in PROJECT_SECRETS}
    return clean


def _int(value: Any, loc: list) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WebhookError(loc, "must be an integer id")
    return value


def _obj(value: Any, loc: list) -> dict:
    if not isinstance(value, dict):
        raise WebhookError(loc, "must be an object")
    return value


def _list(value: Any, loc: list) -> list:
    if not isinstance(value, list):
        raise WebhookError(loc, "must be a list")
    return value


def label_config_hash(label_config: str) -> str:
    return hashlib.sha1(label_config.encode("utf-8")).hexdigest()


def parse(body: Any) -> ParsedWebhook:
    """Validate a webhook body and turn its annotation events into changes."""
    body = _obj(body, [])
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise WebhookError(["action"], "required: the Label Studio webhook action")
    project = body.get("project")
    project_id = project.get("id") if isinstance(project, dict) else project
    if project_id is not None and (isinstance(project_id, bool) or not isinstance(project_id, int)):
        raise WebhookError(["project", "id"], "must be an integer id")
    label_config = project.get("label_config") if isinstance(project, dict) else None
    parsed = ParsedWebhook(action, project_id, label_config if isinstance(label_config, str)
                           else None)
    if action in UPSERT_ACTIONS:
        if action == "ANNOTATIONS_CREATED":
            annotations = _list(body.get("annotation"), ["annotation"])
            tasks = _list(body.get("task", []), ["task"])
        else:
            annotations = [_obj(body.get("annotation"), ["annotation"])]
            task = body.get("task")
            tasks = [task] if task is not None else []
        by_id: dict[int, dict] = {}
        for i, t in enumerate(tasks):
            t = _obj(t, ["task", i] if action == "ANNOTATIONS_CREATED" else ["task"])
            by_id[_int(t.get("id"), ["task", "id"])] = t
        if parsed.label_config is None:
            raise WebhookError(["project", "label_config"], "required to convert annotations "
                               "(Label Studio sends the project with every annotation event)")
        for i, ann in enumerate(annotations):
            loc = ["annotation", i] if action == "ANNOTATIONS_CREATED" else ["annotation"]
            parsed.changes.append(_upsert(_obj(ann, loc), loc, by_id, project_id,
                                          label_config_hash(parsed.label_config)))
    elif action in DELETE_ACTIONS:
        for i, ann in enumerate(_list(body.get("annotations"), ["annotations"])):
            ann_id = _int(_obj(ann, ["annotations", i]).get("id"), ["annotations", i, "id"])
            parsed.changes.append(AnnotationChange("delete", ann_id, project_id, None, None))
    else:
        parsed.ignored_reason = f"action {action} does not change annotations"
    return parsed


def _upsert(ann: dict, loc: list, tasks: dict[int, dict], project_id: int | None,
            config_hash: str) -> AnnotationChange:
    ann_id = _int(ann.get("id"), [*loc, "id"])
    task_ref = ann.get("task")
    task_id = task_ref.get("id") if isinstance(task_ref, dict) else task_ref
    task_id = _int(task_id, [*loc, "task"])
    result = _list(ann.get("result"), [*loc, "result"])
    for j, item in enumerate(result):
        _obj(item, [*loc, "result", j])
    updated_at = ann.get("updated_at") or ann.get("created_at")
    if not isinstance(updated_at, str):
        raise WebhookError([*loc, "updated_at"], "required: the annotation's update time")
    task = tasks.get(task_id) or (task_ref if isinstance(task_ref, dict) else None)
    if task is None:
        raise WebhookError(["task"], f"task {task_id} of annotation {ann_id} is missing")
    if not isinstance(task.get("data"), dict):
        raise WebhookError(["task", "data"], "must be an object")
    created_at = ann.get("created_at") if isinstance(ann.get("created_at"), str) else None
    if ann.get("was_cancelled"):
        return AnnotationChange("ignored", ann_id, project_id, task_id, updated_at,
                                reason="was_cancelled: the task was skipped, nothing to export",
                                created_at=created_at)
    kept = {k: ann[k] for k in ANNOTATION_FIELDS if k in ann}
    kept["task"] = task_id
    payload = orjson.dumps({"annotation": kept, "task": {"id": task_id, "data": task["data"]},
                            "project": project_id, "label_config_hash": config_hash})
    return AnnotationChange("upsert", ann_id, project_id, task_id, updated_at, payload,
                            created_at=created_at)


@dataclass(frozen=True)
class StoredAnnotation:
    annotation: dict
    task: dict
    project_id: int | None
    label_config_hash: str


def decode(payload: bytes) -> StoredAnnotation:
    """Read back what ``parse`` stored for an upsert."""
    data = orjson.loads(payload)
    return StoredAnnotation(data["annotation"], data["task"], data.get("project"),
                            data["label_config_hash"])
