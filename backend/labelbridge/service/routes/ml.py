"""Label Studio's ML-backend protocol: ``/``, ``/health``, ``/setup``, ``/predict``, ``/versions``.

Same protocol as the label-studio-ml v2 server, without depending on it. ``/predict`` is the hot
path: the body is parsed with orjson, checked by hand (the field named on every error) and
answered with pre-serialized bytes; its pydantic model only documents it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from labelbridge.labelstudio.mapping import MappingError
from labelbridge.service import logs
from labelbridge.service.auth import BasicAuth
from labelbridge.service.errors import JSON, ClientError, field_error, respond
from labelbridge.service.metrics import Metrics
from labelbridge.service.openapi import body, errors
from labelbridge.service.runtime import Runtime
from labelbridge.service.schemas import (HealthResponse, PredictResponse, SetupResponse,
                                         VersionsResponse)
from labelbridge.settings import Settings

MODEL_CLASS = "LabelboxPredictions"
INDEX_ROWS_TTL_S = 5.0


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ClientError(400, f"request body is not valid JSON: {exc}") from None


def _project_id(project: Any) -> int | None:
    """Label Studio sends ``"<id>.<timestamp>"``."""
    head = project.split(".", 1)[0] if isinstance(project, str) else ""
    return int(head) if head.isascii() and head.isdigit() and len(head) < 16 else None


class _Cached:
    """A slow figure (an index count) read off the event loop at most every ``ttl`` seconds."""

    def __init__(self, read: Callable[[], int], ttl: float = INDEX_ROWS_TTL_S) -> None:
        self.read, self.ttl = read, ttl
        self.value, self.at = 0, float("-inf")

    async def get(self) -> int:
        if time.monotonic() - self.at > self.ttl:
            self.value, self.at = await asyncio.to_thread(self.read), time.monotonic()
        return self.value


def register(app: FastAPI, rt: Runtime, settings: Settings, auth: BasicAuth,
             metrics: Metrics) -> None:
    index_rows = _Cached(lambda: rt.index_rows)
    max_tasks = settings.max_predict_tasks
    ml = {"tags": ["ML backend"], "responses": errors(401)}

    @app.get("/", **ml, response_model=HealthResponse, summary="Same as /health")
    @app.get("/health", **ml, response_model=HealthResponse,
             summary="Label Studio's health check (1 s timeout): UP while the process serves")
    async def health(request: Request) -> Response:
        auth.check(request.scope)
        return respond({"status": "UP", "model_class": MODEL_CLASS,
                        "model_version": rt.model_version, "index_rows": await index_rows.get(),
                        "outbox": await asyncio.to_thread(rt.outbox.health)})

    async def json_object(request: Request) -> dict:
        """The body of an authorized request, which must be a JSON object."""
        auth.check(request.scope)
        payload = parse_json(await request.body())
        if not isinstance(payload, dict):
            raise field_error([], "must be a JSON object")
        return payload

    @app.post("/setup", tags=["ML backend"], response_model=SetupResponse,
              openapi_extra=body("SetupRequest"), responses=errors(400, 401, 408, 413, 422),
              summary="Label Studio connects: answers the model version at once")
    async def setup(request: Request) -> Response:
        payload = await json_object(request)
        logs.bind(project=_project_id(payload.get("project")))
        schema = payload.get("schema")
        if schema is not None and not isinstance(schema, str):
            raise field_error(["schema"], "must be the label config XML string")
        if schema:
            try:
                rt.predictor_prepare_later(schema)  # answers at once; converts in the background
            except MappingError as exc:
                raise field_error(["schema"], str(exc)) from None
        return respond({"model_version": rt.model_version})

    @app.post("/predict", tags=["ML backend"], response_model=PredictResponse,
              openapi_extra=body("PredictRequest"), responses=errors(400, 401, 408, 413, 422),
              summary="One prediction (or []) per task, in order")
    async def predict(request: Request) -> Response:
        payload = await json_object(request)
        tasks = payload.get("tasks")
        if not isinstance(tasks, list):
            raise field_error(["tasks"], "required: a list of Label Studio tasks")
        if len(tasks) > max_tasks:
            raise field_error(["tasks"], f"{len(tasks)} tasks; at most {max_tasks} per request "
                              "(LABELBRIDGE_MAX_PREDICT_TASKS)", 413, "too_large")
        for i, task in enumerate(tasks):
            if not isinstance(task, dict):
                raise field_error(["tasks", i], "must be an object")
            if not isinstance(task.get("data"), dict):
                raise field_error(["tasks", i, "data"], "required: the task data object")
        logs.bind(project=_project_id(payload.get("project")),
                  task=tasks[0].get("id") if len(tasks) == 1 else None)
        label_config = payload.get("label_config") or rt.default_label_config
        if not isinstance(label_config, str) or not label_config:
            raise field_error(["label_config"], "required: the project's label config (or set "
                              "LABELBRIDGE_LABEL_CONFIG)")
        try:
            items = rt.predict(tasks, label_config)
        except MappingError as exc:
            raise field_error(["label_config"], str(exc)) from None
        hits = sum(1 for it in items if it != b"[]")
        metrics.predict_requests.inc()
        metrics.predictions_served.inc(hits)
        metrics.lookups_missed.inc(len(items) - hits)
        return Response(b'{"results":[' + b",".join(items) + b"]}", media_type=JSON)

    @app.get("/versions", **ml, response_model=VersionsResponse,
             summary="The model versions Label Studio may show")
    async def versions(request: Request) -> Response:
        auth.check(request.scope)
        return respond({"versions": [rt.model_version]})
