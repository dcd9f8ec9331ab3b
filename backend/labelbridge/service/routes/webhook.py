"""``POST /webhook``: Label Studio's annotation events into the outbox, acknowledged at once.

Label Studio sends each event once, with a 1 s timeout, and ignores the answer: this route
only authenticates, validates and appends. A body it refuses (4xx) is kept in the outbox's
rejected list with its secrets scrubbed and only allow-listed headers; a refusal for the token
keeps no body at all (``service.auth``). ``/webhook/`` is the same route (never a redirect).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from labelbridge.groundtruth.outbox import OutboxUnavailable
from labelbridge.labelstudio import redact, webhooks
from labelbridge.service import auth, logs
from labelbridge.service.errors import ClientError, respond
from labelbridge.service.metrics import Metrics
from labelbridge.service.openapi import body, errors
from labelbridge.service.runtime import Runtime
from labelbridge.service.schemas import WebhookResponse
from labelbridge.settings import Settings

log = logging.getLogger(__name__)
_SEEN_LOCK = threading.Lock()


def record_refusal(outbox: Any, why: str, project: int | None, reason: str,
                   headers: dict[str, str]) -> None:
    """Keep a token refusal (no body) and remember its project for the start-up warning."""
    outbox.reject(b"", reason, headers)
    with _SEEN_LOCK:
        seen = orjson.loads(outbox.get_cursor(auth.SEEN_CURSOR) or "{}")
        outbox.set_cursor(auth.SEEN_CURSOR, orjson.dumps(
            auth.remember(seen, why, project, time.time())).decode())


def register(app: FastAPI, rt: Runtime, settings: Settings, metrics: Metrics,
             secrets: list[str]) -> None:
    token = auth.WebhookToken(settings.webhook_header,
                              settings.webhook_token.get_secret_value()
                              if settings.webhook_token else None)
    refusals = auth.Refusals(settings.webhook_header)
    max_regions = settings.max_regions

    async def reject(raw: bytes, parsed: Any, reason: str, request: Request) -> None:
        headers = redact.kept_headers(request.scope["headers"])

        def keep() -> None:    # scrubbing a large body takes time: off the event loop
            kept, note = redact.rejected_copy(raw, parsed, secrets)
            try:
                rt.outbox.reject(kept, reason + note, headers)
            except OutboxUnavailable as exc:   # the client still gets its 4xx, not a 503
                log.warning("a rejected webhook body was not kept: %s", exc)
        await asyncio.to_thread(keep)

    async def refuse(why: str, raw: bytes, request: Request) -> None:
        action, project = auth.peek(raw)
        logs.bind(project=project)
        metrics.webhook(action, "unauthorized")
        if refusals.note(why, project):
            reason = refusals.reason(why, project)
            headers = redact.kept_headers(request.scope["headers"])
            await asyncio.to_thread(record_refusal, rt.outbox, why, project, reason, headers)
        raise ClientError(401, f"missing or wrong {settings.webhook_header} header")

    @app.post("/webhook", tags=["webhook"], response_model=WebhookResponse,
              openapi_extra=body("WebhookBody"), responses=errors(400, 401, 408, 413, 422, 503),
              summary="Label Studio webhook events (annotations go to the outbox)")
    @app.post("/webhook/", include_in_schema=False)
    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        why = token.refusal(request.scope)
        raw = await request.body()
        if why is not None:
            await refuse(why, raw, request)
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await reject(raw, None, f"not valid JSON: {exc}", request)
            metrics.webhook(None, "rejected")
            raise ClientError(400, f"request body is not valid JSON: {exc}") from None
        action = payload.get("action") if isinstance(payload, dict) else None
        try:
            parsed = webhooks.parse(payload, max_regions)
        except webhooks.WebhookError as exc:
            setting = " (LABELBRIDGE_MAX_REGIONS)" if isinstance(exc, webhooks.LimitExceeded) \
                else ""
            await reject(raw, payload, str(exc) + setting, request)
            metrics.webhook(action, "rejected")
            detail = exc.detail()
            detail[0]["msg"] += setting
            raise ClientError(422, detail) from None
        logs.bind(project=parsed.project_id, **_ids(parsed))
        if parsed.ignored_reason:
            metrics.webhook(parsed.action, "ignored")
            log.debug("webhook %s ignored: %s", parsed.action, parsed.ignored_reason)
            return respond({"status": "ignored", "action": parsed.action,
                            "reason": parsed.ignored_reason})
        result = await rt.accept(parsed, source="webhook")
        metrics.webhook(parsed.action, "accepted")
        metrics.annotations.labels("accepted").inc(result.accepted)
        metrics.annotations.labels("duplicate").inc(result.duplicates)
        metrics.annotations.labels("ignored").inc(result.ignored)
        log.info("webhook %s: %d accepted, %d duplicate, %d ignored in %.1f ms", parsed.action,
                 result.accepted, result.duplicates, result.ignored,
                 (time.perf_counter() - started) * 1000)
        return respond({"status": "accepted", "action": parsed.action,
                        "accepted": result.accepted, "duplicates": result.duplicates,
                        "ignored": result.ignored})


def _ids(parsed: webhooks.ParsedWebhook) -> dict[str, Any]:
    """Task and annotation ids for the log context (one event: the id; several: the list)."""
    tasks = sorted({c.task_id for c in parsed.changes if c.task_id is not None})
    annotations = [c.annotation_id for c in parsed.changes]
    one = lambda xs: xs[0] if len(xs) == 1 else (xs[:20] or None)  # noqa: E731
    return {"task": one(tasks), "annotation": one(annotations)}
