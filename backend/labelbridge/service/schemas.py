"""The bodies of every endpoint, as Label Studio 1.23 sends them, for the OpenAPI document.

These models describe; they do not run on requests. ``/predict`` is the hot path (it parses
with orjson and answers pre-serialized bytes) and the webhook has its own validator
(``labelstudio.webhooks``), both cheaper than pydantic and naming the same fields.
``tests/unit/test_openapi.py`` checks that every captured Label Studio body fits its model.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from labelbridge.labelstudio.webhooks import MAX_ID

Id = Field(ge=1, le=MAX_ID)


class _Open(BaseModel):
    """Label Studio sends more fields than labelbridge reads; they are allowed."""
    model_config = ConfigDict(extra="allow")


# ----- ML backend -------------------------------------------------------------------------
class SetupRequest(_Open):
    project: str | None = Field(None, description='"<project id>.<created_at timestamp>"')
    schema_: str | None = Field(None, alias="schema", description="the project's label config")
    hostname: str | None = None
    access_token: str | None = Field(None, json_schema_extra={"writeOnly": True},
                                     description="never stored or logged")
    extra_params: dict[str, Any] | None = None


class SetupResponse(BaseModel):
    model_version: str


class Task(_Open):
    id: int | None = None
    data: dict[str, Any] = Field(description="the task data; a data row is matched by "
                                 "global_key, data_row_id or the object URL")
    meta: dict[str, Any] | None = None
    annotations: list[dict[str, Any]] | None = None
    predictions: list[dict[str, Any]] | None = None


class PredictParams(_Open):
    login: str | None = None
    password: str | None = Field(None, json_schema_extra={"writeOnly": True})
    context: dict[str, Any] | None = None


class PredictRequest(_Open):
    tasks: list[Task] = Field(description="at most LABELBRIDGE_MAX_PREDICT_TASKS")
    label_config: str | None = Field(None, description="required unless "
                                     "LABELBRIDGE_LABEL_CONFIG is set")
    project: str | None = None
    params: PredictParams | None = None


class Prediction(BaseModel):
    result: list[dict[str, Any]]
    score: float | None = None
    model_version: str


class PredictResponse(BaseModel):
    results: list[Union[Prediction, list[Prediction]]] = Field(
        description="one element per task, in order; [] where there is no prediction")


class OutboxHealth(BaseModel):
    ok: bool
    error: str | None = None


class HealthResponse(BaseModel):
    status: Literal["UP"]
    model_class: str
    model_version: str
    index_rows: int
    outbox: OutboxHealth = Field(description="whether webhooks can be stored now (503 if not)")


class VersionsResponse(BaseModel):
    versions: list[str]


# ----- webhook ----------------------------------------------------------------------------
class ResultItem(_Open):
    id: str | None = None
    type: str | None = None
    from_name: str | None = None
    to_name: str | None = None
    value: dict[str, Any] | None = None


class TaskRef(_Open):
    id: int = Id


class Annotation(_Open):
    id: int = Id
    result: list[ResultItem] = Field(description="at most LABELBRIDGE_MAX_REGIONS items")
    task: Union[int, TaskRef] = Field(description="the task id")
    was_cancelled: bool = False
    created_at: str | None = Field(None, description="ISO 8601")
    updated_at: str = Field(description="ISO 8601")
    parent_prediction: int | None = None


class WebhookTask(_Open):
    id: int = Id
    data: dict[str, Any]


class Project(_Open):
    id: int = Id
    label_config: str | None = Field(None, description="required with annotation events")


class AnnotationEvent(_Open):
    action: Literal["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]
    annotation: Annotation
    task: WebhookTask
    project: Project


class AnnotationsCreatedEvent(_Open):
    action: Literal["ANNOTATIONS_CREATED"]
    annotation: list[Annotation]
    task: list[WebhookTask]
    project: Project


class DeletedAnnotation(_Open):
    id: int = Id


class AnnotationsDeletedEvent(_Open):
    action: Literal["ANNOTATIONS_DELETED"]
    annotations: list[DeletedAnnotation]
    project: Project | None = None


class OtherEvent(_Open):
    action: Literal["PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED", "TASKS_CREATED",
                    "TASKS_DELETED", "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED",
                    "LABEL_LINK_DELETED", "START_TRAINING"] = Field(
        description="acknowledged and ignored")
    project: Project | int | None = None


WebhookBody = Union[AnnotationEvent, AnnotationsCreatedEvent, AnnotationsDeletedEvent,
                    OtherEvent]


class WebhookResponse(BaseModel):
    status: Literal["accepted", "ignored"]
    action: str
    accepted: int | None = None
    duplicates: int | None = None
    ignored: int | None = None
    reason: str | None = None


# ----- operations and errors ---------------------------------------------------------------
class ReadyResponse(BaseModel):
    status: Literal["ready", "degraded"]
    reasons: list[str]


class FieldError(BaseModel):
    loc: list[Union[str, int]]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: Union[str, list[FieldError]]


REQUEST_MODELS = {"SetupRequest": SetupRequest, "PredictRequest": PredictRequest,
                  "WebhookBody": WebhookBody}
