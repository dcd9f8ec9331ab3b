"""HTTP app: the Label Studio ML-backend protocol and the webhook endpoint. No format logic.

Implements the same HTTP protocol as the label-studio-ml v2 server (``/``, ``/health``,
``/setup``, ``/predict``, ``/versions``, ``/metrics``, ``/webhook``) without depending on it.
Basic auth (``BASIC_AUTH_USER``/``BASIC_AUTH_PASS``) guards the ML endpoints, never
``/webhook``: Label Studio does not send it there; the webhook has its own shared secret.
"""

from __future__ import annotations

import base64
import binascii
import gc
import hmac
import logging
import time
from collections import Counter
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from labelbridge.groundtruth.outbox import OutboxUnavailable
from labelbridge.labelstudio import webhooks
from labelbridge.labelstudio.mapping import MappingError
from labelbridge.service.runtime import Runtime
from labelbridge.settings import Settings

log = logging.getLogger(__name__)
MODEL_CLASS = "LabelboxPredictions"
JSON = "application/json"
RETRY_AFTER_S = 10   # what a 503 asks the caller to wait when the outbox cannot store events


class ClientError(Exception):
    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        self.status, self.detail, self.headers = status, detail, headers


def _field_error(loc: list, msg: str) -> ClientError:
    return ClientError(422, [{"loc": ["body", *loc], "msg": msg, "type": "value_error"}])


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ClientError(400, f"request body is not valid JSON: {exc}") from None


def _respond(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    rt = runtime or Runtime(settings)
    counters: Counter[str] = Counter()
    user = settings.basic_auth_user
    password = settings.basic_auth_pass.get_secret_value() if settings.basic_auth_pass else None
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        rt.start()
        # Everything alive now (modules, SDKs, the runtime) lives as long as the server. A full
        # collection scanning it all stalls every request for ~0.1-0.3 s on this machine; frozen,
        # collections only scan what requests create.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            rt.stop()

    app = FastAPI(title="labelbridge", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.runtime = rt

    @app.exception_handler(ClientError)
    async def _client_error(request: Request, exc: ClientError) -> Response:
        return JSONResponse({"detail": exc.detail}, exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse({"detail": exc.detail}, exc.status_code)

    @app.exception_handler(OutboxUnavailable)
    async def _outbox_unavailable(request: Request, exc: OutboxUnavailable) -> Response:
        # Never 200 for what is not on disk; the outbox's log says what happened.
        counters["outbox_unavailable"] += 1
        return JSONResponse({"detail": f"the outbox cannot store events now: {exc}"}, 503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": exc.errors()}, 422)

    def check_basic_auth(request: Request) -> None:
        if user is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        ok = False
        if scheme.lower() == "basic":
            try:
                given_user, _, given_pass = base64.b64decode(encoded).decode().partition(":")
                ok = hmac.compare_digest(given_user.encode(), user.encode()) & \
                    hmac.compare_digest(given_pass.encode(), (password or "").encode())
            except (binascii.Error, UnicodeDecodeError):
                ok = False
        if not ok:
            raise ClientError(401, "basic authentication required",
                              {"WWW-Authenticate": 'Basic realm="labelbridge"'})

    # ----- ML backend ---------------------------------------------------------------------
    @app.get("/")
    @app.get("/health")
    async def health(request: Request) -> Response:
        check_basic_auth(request)
        return _respond({"status": "UP", "model_class": MODEL_CLASS,
                         "model_version": rt.model_version, "index_rows": rt.index_rows,
                         "outbox": rt.outbox.health()})

    @app.post("/setup")
    async def setup(request: Request) -> Response:
        check_basic_auth(request)
        body = _json(await request.body())
        if not isinstance(body, dict):
            raise _field_error([], "must be a JSON object")
        schema = body.get("schema")
        if schema is not None and not isinstance(schema, str):
            raise _field_error(["schema"], "must be the label config XML string")
        if schema:
            try:
                rt.predictor_prepare_later(schema)  # answers at once; converts in the background
            except MappingError as exc:
                raise _field_error(["schema"], str(exc)) from None
        return _respond({"model_version": rt.model_version})

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        check_basic_auth(request)
        body = _json(await request.body())
        if not isinstance(body, dict):
            raise _field_error([], "must be a JSON object")
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise _field_error(["tasks"], "required: a list of Label Studio tasks")
        for i, task in enumerate(tasks):
            if not isinstance(task, dict):
                raise _field_error(["tasks", i], "must be an object")
            if not isinstance(task.get("data"), dict):
                raise _field_error(["tasks", i, "data"], "required: the task data object")
        label_config = body.get("label_config") or rt.default_label_config
        if not isinstance(label_config, str) or not label_config:
            raise _field_error(["label_config"], "required: the project's label config (or set "
                               "LABELBRIDGE_LABEL_CONFIG)")
        try:
            items = rt.predict(tasks, label_config)
        except MappingError as exc:
            raise _field_error(["label_config"], str(exc)) from None
        counters["predict_requests"] += 1
        counters["predict_tasks"] += len(tasks)
        counters["predict_hits"] += sum(1 for it in items if it != b"[]")
        return Response(b'{"results":[' + b",".join(items) + b"]}", media_type=JSON)

    @app.get("/versions")
    async def versions(request: Request) -> Response:
        check_basic_auth(request)
        return _respond({"versions": [rt.model_version]})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        check_basic_auth(request)
        return _respond({"counters": dict(counters), **rt.metrics()})

    # ----- webhook ------------------------------------------------------------------------
    @app.post("/webhook")
    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        if token is not None:
            given = request.headers.get(settings.webhook_header, "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                counters["webhook_unauthorized"] += 1
                raise ClientError(401, f"missing or wrong {settings.webhook_header} header")
        raw = await request.body()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("authorization", "cookie", settings.webhook_header.lower())}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await rt.reject(raw, f"not valid JSON: {exc}", headers)
            counters["webhook_rejected"] += 1
            raise ClientError(400, f"request body is not valid JSON: {exc}") from None
        try:
            parsed = webhooks.parse(body)
        except webhooks.WebhookError as exc:
            await rt.reject(orjson.dumps(webhooks.strip_secrets(body)), str(exc), headers)
            counters["webhook_rejected"] += 1
            raise ClientError(422, exc.detail()) from None
        if parsed.ignored_reason:
            counters[f"webhook_ignored_{parsed.action}"] += 1
            log.debug("webhook %s ignored: %s", parsed.action, parsed.ignored_reason)
            return _respond({"status": "ignored", "action": parsed.action,
                             "reason": parsed.ignored_reason})
        result = await rt.accept(parsed, source="webhook")
        counters["webhook_events"] += len(parsed.changes)
        log.info("webhook %s: %d accepted, %d duplicate, %d ignored in %.1f ms", parsed.action,
                 result.accepted, result.duplicates, result.ignored,
                 (time.perf_counter() - started) * 1000)
        return _respond({"status": "accepted", "action": parsed.action,
                         "accepted": result.accepted, "duplicates": result.duplicates,
                         "ignored": result.ignored})

    return app
