"""``LabelboxModel``: labelbridge as a model class of the official label-studio-ml framework.

It answers ``predict`` with what ``labelbridge serve`` answers ``/predict`` (the same index,
region ids and model version) and hands ``fit`` events to the outbox ``/webhook`` appends to
(deduplicated by annotation id and ``updated_at``, so an event that reaches both is delivered
once). Settings come from the same environment variables as ``labelbridge serve``.

The two framework generations call it differently:

* label-studio-ml 1.0.9 (the PyPI release) builds a model at every ``/setup`` with
  ``label_config``/``hostname``/``access_token``, calls ``predict(tasks, **params)``, never
  ``setup()``, and runs each ``/webhook`` body in a forked process through ``process_event``.
  Its ``/setup`` answers its own model version ("INITIAL"), not the model's.
* v2 (GitHub only) builds a model per request with ``project_id``/``label_config``; ``setup()``
  stores the model version its ``/setup`` answers; ``predict(tasks, context=None, **params)``;
  ``fit(event, data)`` only for ``ANNOTATION_CREATED``/``ANNOTATION_UPDATED`` (it answers
  other actions itself, so bulk creations and deletions never reach the model).

Instances are cheap: the runtime (index, predictor, outbox) is built once per process, on first
use. Nothing here delivers ground truth: the outbox's recovery assumes one deliverer, and a
framework may run several processes, so ``labelbridge serve`` or ``labelbridge deliver`` does.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import orjson

from labelbridge.labelstudio import redact, webhooks
from labelbridge.service import logs
from labelbridge.service.runtime import Runtime
from labelbridge.settings import load_settings

try:
    from label_studio_ml.model import LabelStudioMLBase
except ImportError as exc:  # 1.0.9 imports rq and redis, which it does not declare
    raise ImportError(
        f"labelbridge.mlbackend runs inside the label-studio-ml framework, which cannot be "
        f"imported here ({exc}); label-studio-ml 1.0.9 also needs rq and redis. See the README, "
        "'Running inside the official ML-backend framework'") from exc

log = logging.getLogger(__name__)
SOURCE = "mlbackend"   # the outbox's record of where an event came from

_lock = threading.Lock()
_runtime: Runtime | None = None
_inherited: list[Runtime] = []   # a parent's runtime after a fork: its SQLite is not ours


def _after_fork_in_child() -> None:
    """1.0.9 forks a process per webhook, gunicorn per worker: the child builds its own
    runtime and lock (a lock held by another thread at the fork would never be released)."""
    global _lock, _runtime
    _lock = threading.Lock()
    if _runtime is not None:
        _inherited.append(_runtime)   # kept referenced: closing it here would touch the parent's
        _runtime = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def runtime() -> Runtime:
    """This process's runtime, built once from the environment (thread-safe). Never started:
    no delivery worker, reconciler or background preparation run in the framework's process."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                rt = Runtime(load_settings())
                log.info("labelbridge model: %d indexed rows, model version %s; ground truth "
                         "goes to %s (`labelbridge serve` or `labelbridge deliver` delivers "
                         "it)", rt.index_rows, rt.model_version, rt.outbox.location)
                _runtime = rt
    return _runtime


class LabelboxModel(LabelStudioMLBase):
    """Labelbox model outputs as Label Studio predictions; annotations into the outbox."""

    def setup(self) -> None:
        """v2 only (from every instance's ``__init__``): its ``/setup`` answers the stored
        ``model_version``. Conversion for the label config starts in the background, as
        ``labelbridge serve``'s ``/setup`` does."""
        rt = runtime()
        if self.get("model_version") != rt.model_version:
            self.set("model_version", rt.model_version)
        label_config = self._label_config()
        if label_config:
            rt.predictor_prepare_later(label_config)

    def _label_config(self) -> str | None:
        # 1.0.9: an attribute from the constructor; v2: a property over its per-project cache.
        return getattr(self, "label_config", None) or runtime().default_label_config

    def predict(self, tasks: list[dict], context: dict | None = None,
                **kwargs: Any) -> list[Any]:
        """One element per task, in order: ``{"result", "score", "model_version"}`` or ``[]``
        (nothing to store). A list, which both generations pass on as ``results``."""
        label_config = self._label_config()
        if not label_config:
            raise ValueError("label_config: required: the project's label config (or set "
                             "LABELBRIDGE_LABEL_CONFIG)")
        return [orjson.loads(item) for item in runtime().predict(list(tasks), label_config)]

    def fit(self, event: str, data: dict | None = None, **kwargs: Any) -> dict:
        """One Label Studio event (the webhook body without ``action``) into the outbox;
        durable when this returns. A body ``/webhook`` would refuse is kept as rejected."""
        rt = runtime()
        body = {**(data or {}), "action": event}
        try:
            parsed = webhooks.parse(body, rt.settings.max_regions)
        except webhooks.WebhookError as exc:   # kept as /webhook keeps a refused body
            kept, note = redact.rejected_copy(None, body, logs.secret_values(rt.settings))
            rt.outbox.reject(kept, str(exc) + note, {})
            log.warning("fit %s rejected: %s", event, exc)
            return {"status": "rejected", "detail": exc.detail()}
        if parsed.ignored_reason:
            return {"status": "ignored", "action": parsed.action,
                    "reason": parsed.ignored_reason}
        result = rt.accept_now(parsed, SOURCE)
        log.info("fit %s: %d accepted, %d duplicate, %d ignored", parsed.action,
                 result.accepted, result.duplicates, result.ignored)
        return {"status": "accepted", "action": parsed.action, "accepted": result.accepted,
                "duplicates": result.duplicates, "ignored": result.ignored}

    def process_event(self, event: str, data: dict, job_id: Any,
                      additional_params: dict) -> None:
        """1.0.9's entry for ``/webhook`` (in a forked process). Its own version passes only
        four actions on, as ``fit((), event=..., ...)``; here every action reaches ``fit``.
        Returns None: a dict would be saved as a training result and become the framework's
        model version."""
        self.fit(event, data)
