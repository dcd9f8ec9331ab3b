"""Label Studio webhook bodies -> outbox events.

Label Studio facts handled here: the envelope is ``{"action", <object or list>, "project"}``;
``ANNOTATIONS_CREATED`` carries lists of annotations and tasks; ``ANNOTATIONS_DELETED`` carries
ids only; a skipped task is an annotation with ``was_cancelled: true``; the embedded project
holds secrets (``token``, ``task_data_password``) that must never be stored or logged (only
the annotation and its task are kept; a refused body is scrubbed by ``redact``). Everything a
client can get wrong is a ``WebhookError`` naming the field: ids outside ``1..MAX_ID``,
timestamps that are not ISO 8601, JSON nested deeper than ``MAX_DEPTH`` where it is stored,
more result items than the caller allows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from labelbridge.model.times import parse_timestamp

UPSERT_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"}
DELETE_ACTIONS = {"ANNOTATIONS_DELETED"}
# Every action Label Studio 1.23 sends (reference/label-studio.md, section 2.2 and START_TRAINING).
KNOWN_ACTIONS = frozenset({"PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED", "TASKS_CREATED",
                           "TASKS_DELETED", "ANNOTATION_CREATED", "ANNOTATIONS_CREATED",
                           "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "LABEL_LINK_CREATED",
                           "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED", "START_TRAINING"})
# Label Studio ids are auto-increment keys, far below this; the outbox keys an annotation id
# reused after a deletion above 2**40 (``groundtruth.outbox.INCARNATION_STEP``), so a larger
# id is refused rather than aliased (and nothing reaches SQLite's 64-bit limit).
MAX_ID = (1 << 40) - 1
# Nesting kept in what is stored (task data, results): real bodies stay below 10 levels.
MAX_DEPTH = 64
# What we keep of an annotation: enough to convert it and to trace it back.
ANNOTATION_FIELDS = ("id", "result", "was_cancelled", "ground_truth", "created_at", "updated_at",
                     "task", "project", "completed_by", "updated_by", "parent_prediction",
                     "parent_annotation", "unique_id", "lead_time")


class WebhookError(ValueError):
    """A webhook body Label Studio would not send; ``loc`` names the field."""

    kind = "value_error"

    def __init__(self, loc: list, msg: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {msg}")
        self.loc = loc
        self.msg = msg

    def detail(self) -> list[dict]:
        return [{"loc": ["body", *self.loc], "msg": self.msg, "type": self.kind}]


class LimitExceeded(WebhookError):
    """A body within the protocol but over a configured limit (``limit`` is that number)."""

    kind = "limit_exceeded"

    def __init__(self, loc: list, msg: str, limit: int) -> None:
        super().__init__(loc, msg)
        self.limit = limit


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


def _int(value: Any, loc: list) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WebhookError(loc, "must be an integer id")
    if not 1 <= value <= MAX_ID:
        raise WebhookError(loc, f"must be an id between 1 and {MAX_ID}, got {value}")
    return value


def _timestamp(value: Any, loc: list) -> str:
    """An ISO 8601 time as Label Studio writes it (``2026-11-22T12:10:10.978865Z``): what the
    outbox can order (the same rule, ``model.times``)."""
    if not isinstance(value, str) or not value.strip():
        raise WebhookError(loc, "must be an ISO 8601 time")
    try:
        parse_timestamp(value)
    except ValueError:
        raise WebhookError(loc, f"must be an ISO 8601 time, got {value[:40]!r}") from None
    return value


def _shallow(value: Any, loc: list, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` (it is stored, and serialisers have limits)."""
    stack: list[tuple[Any, list]] = [(value, loc)]
    while stack:
        node, where = stack.pop()
        if len(where) - len(loc) >= limit:
            raise WebhookError(where, f"nested deeper than {limit} levels")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        stack.extend((v, [*where, k]) for k, v in items if isinstance(v, (dict, list)))


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


def parse(body: Any, max_regions: int | None = None) -> ParsedWebhook:
    """Validate a webhook body and turn its annotation events into changes.

    ``max_regions``: the most result items one annotation may hold (``LimitExceeded``)."""
    body = _obj(body, [])
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise WebhookError(["action"], "required: the Label Studio webhook action")
    project = body.get("project")
    project_id = project.get("id") if isinstance(project, dict) else project
    if project_id is not None:
        _int(project_id, ["project", "id"] if isinstance(project, dict) else ["project"])
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
        by_id: dict[int, tuple[list, dict]] = {}
        for i, t in enumerate(tasks):
            where = ["task", i] if action == "ANNOTATIONS_CREATED" else ["task"]
            by_id[_int(_obj(t, where).get("id"), [*where, "id"])] = (where, t)
        if parsed.label_config is None:
            raise WebhookError(["project", "label_config"], "required to convert annotations "
                               "(Label Studio sends the project with every annotation event)")
        for i, ann in enumerate(annotations):
            loc = ["annotation", i] if action == "ANNOTATIONS_CREATED" else ["annotation"]
            parsed.changes.append(_upsert(_obj(ann, loc), loc, by_id, project_id,
                                          label_config_hash(parsed.label_config), max_regions))
    elif action in DELETE_ACTIONS:
        for i, ann in enumerate(_list(body.get("annotations"), ["annotations"])):
            ann_id = _int(_obj(ann, ["annotations", i]).get("id"), ["annotations", i, "id"])
            parsed.changes.append(AnnotationChange("delete", ann_id, project_id, None, None))
    else:
        parsed.ignored_reason = f"action {action} does not change annotations"
    return parsed


def _upsert(ann: dict, loc: list, tasks: dict[int, tuple[list, dict]], project_id: int | None,
            config_hash: str, max_regions: int | None) -> AnnotationChange:
    ann_id = _int(ann.get("id"), [*loc, "id"])
    task_ref = ann.get("task")
    task_id = task_ref.get("id") if isinstance(task_ref, dict) else task_ref
    task_id = _int(task_id, [*loc, "task", "id"] if isinstance(task_ref, dict) else [*loc, "task"])
    result = _list(ann.get("result"), [*loc, "result"])
    if max_regions is not None and len(result) > max_regions:
        raise LimitExceeded([*loc, "result"], f"{len(result)} result items; at most "
                            f"{max_regions} per annotation", max_regions)
    for j, item in enumerate(result):
        _obj(item, [*loc, "result", j])
    _shallow(result, [*loc, "result"])
    created_at = ann.get("created_at")
    if created_at is not None:
        created_at = _timestamp(created_at, [*loc, "created_at"])
    updated_at = ann.get("updated_at")
    if updated_at is not None:
        updated_at = _timestamp(updated_at, [*loc, "updated_at"])
    updated_at = updated_at or created_at
    if updated_at is None:
        raise WebhookError([*loc, "updated_at"], "required: the annotation's update time")
    where, task = tasks.get(task_id) or ([*loc, "task"], task_ref)
    if not isinstance(task, dict):
        raise WebhookError(["task"], f"task {task_id} of annotation {ann_id} is missing")
    if not isinstance(task.get("data"), dict):
        raise WebhookError([*where, "data"], "must be an object")
    _shallow(task["data"], [*where, "data"])
    if ann.get("was_cancelled"):
        return AnnotationChange("ignored", ann_id, project_id, task_id, updated_at,
                                reason="was_cancelled: the task was skipped, nothing to export",
                                created_at=created_at)
    kept = {k: ann[k] for k in ANNOTATION_FIELDS if k in ann}
    kept["task"] = task_id
    for k in ANNOTATION_FIELDS:
        if isinstance(kept.get(k), (dict, list)) and k != "result":
            _shallow(kept[k], [*loc, k])
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
