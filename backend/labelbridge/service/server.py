"""The HTTP app: routes (``service.routes``), their guards and what watches them. No format logic.

Layers, outermost first: ``observe`` (request id, log context, latency) -> ``limits`` (body size
and time) -> FastAPI (errors as JSON, ``service.errors``) -> the routes: Label Studio's
ML-backend protocol (``routes.ml``), its webhooks (``routes.webhook``) and the operators'
endpoints (``routes.ops``). Basic auth (``BASIC_AUTH_USER``/``BASIC_AUTH_PASS``) guards every
endpoint but ``/webhook``, which Label Studio calls without it; the webhook has its own shared
secret. The head of a request is bounded below all this, in ``service.protocol``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI

from labelbridge import compiled
from labelbridge.service import auth, errors, logs
from labelbridge.service.limits import BodyLimitMiddleware, BodyLimits
from labelbridge.service.metrics import Metrics
from labelbridge.service.observe import ObserveMiddleware
from labelbridge.service.readiness import Readiness
from labelbridge.service.routes import ml, ops, webhook
from labelbridge.service.runtime import Runtime
from labelbridge.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    rt = runtime or Runtime(settings)
    readiness = Readiness(settings)
    converters = compiled.summary()

    def snapshot() -> dict[str, Any]:
        snap = rt.metrics() | {"converters": converters}
        if snap["outbox"] is not None:
            readiness.note_dead_letters(snap["outbox"].get("dead_letters") or 0)
        return snap

    metrics = Metrics(snapshot, rt.worker_metrics_dir,
                      in_process_delivery=settings.delivery_worker == "thread")
    basic = auth.BasicAuth(settings.basic_auth_user, settings.basic_auth_pass.get_secret_value()
                           if settings.basic_auth_pass else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        rt.start()
        await asyncio.to_thread(_at_start, rt, settings, snapshot)
        # Everything alive now (modules, SDKs, the runtime) lives as long as the server. A full
        # collection scanning it all stalls every request for ~0.1-0.3 s on this machine; frozen,
        # collections only scan what requests create.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            rt.stop()

    app = FastAPI(title="labelbridge", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None, redirect_slashes=False,
                  description="Label Studio ML backend serving Labelbox predictions, and the "
                  "webhook receiver sending Label Studio annotations to Labelbox.")
    app.state.runtime = rt
    app.state.metrics = metrics
    errors.install(app)
    ml.register(app, rt, settings, basic, metrics)
    webhook.register(app, rt, settings, metrics, logs.secret_values(settings))
    ops.register(app, settings, basic, metrics, readiness, snapshot)
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits.from_settings(settings),
                       refused=lambda reason: metrics.refused.labels(reason).inc())
    app.add_middleware(ObserveMiddleware, metrics=metrics)
    return app


def _at_start(rt: Runtime, settings: Settings, snapshot) -> None:
    """Seed the dead-letter baseline; name the projects whose webhooks the token refused; say
    whether the converters run compiled."""
    converters = snapshot()["converters"]
    if converters == "compiled":
        log.info("converters: compiled (mypyc)")
    else:
        log.warning("converters: %s: preparing predictions is slower (see README, "
                    "\"Compiled converters\")", converters)
    if settings.webhook_token is not None:
        try:
            seen = orjson.loads(rt.outbox.get_cursor(auth.SEEN_CURSOR) or "{}")
        except Exception:  # a damaged record must not stop the start
            seen = {}
        auth.warn_at_start(seen, settings.webhook_header)
