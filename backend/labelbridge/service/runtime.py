"""The service's parts, wired from the settings: index, predictor, outbox, workers."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable

from labelbridge.groundtruth.converter import GroundTruthConverter, resolver_from_store
from labelbridge.groundtruth.delivery import Deliverer, DeliveryPolicy
from labelbridge.groundtruth.file_sink import FileSink
from labelbridge.groundtruth.outbox import AppendResult, IncomingEvent, Outbox, OutboxUnavailable
from labelbridge.groundtruth.reconcile import Reconciler
from labelbridge.groundtruth.worker_process import DeliveryProcess
from labelbridge.labelbox.export import Selection
from labelbridge.labelbox.gateway import LabelboxGateway
from labelbridge.labelstudio.api import LabelStudioApi
from labelbridge.labelstudio.mapping import Overrides
from labelbridge.labelstudio.webhooks import ParsedWebhook, label_config_hash
from labelbridge.model.sink import Sink
from labelbridge.predictions.indexer import export_fingerprint, index_export
from labelbridge.predictions.predictor import NO_PREDICTION, Predictor
from labelbridge.predictions.store import PredictionStore
from labelbridge.settings import Settings, as_env

log = logging.getLogger(__name__)
EMPTY_MODEL_VERSION = "labelbridge-no-export"
DOCTOR_TIMEOUT = 10.0   # seconds the start-up mapping check waits for Label Studio / Labelbox


def selection(settings: Settings) -> Selection:
    return Selection(settings.export_source, settings.labelbox_model_run_id,
                     settings.labelbox_project_id)


def ensure_index(settings: Settings, progress: Callable[[int], None] | None = None) -> bool:
    """Build the prediction index when it is missing or the export changed. True if built."""
    if settings.export is None:
        return False
    sel = selection(settings)
    store = PredictionStore(settings.predictions_db)
    if store.exists():
        try:
            if store.meta().get("fingerprint") == export_fingerprint(settings.export, sel):
                return False
        finally:
            store.close()
        log.info("the export changed since the index was built; rebuilding")
    result = index_export(settings.export, settings.predictions_db, sel, progress)
    log.info("indexed %d data rows from %s (model version %s)", result.rows, settings.export,
             result.model_version)
    return True


def make_sink(settings: Settings) -> Sink:
    """Labelbox when a key is set; otherwise NDJSON files under the data dir."""
    if settings.sink == "file":
        return FileSink(settings.file_sink_dir)
    assert settings.labelbox_api_key and settings.labelbox_project_id
    return LabelboxGateway(settings.labelbox_api_key.get_secret_value(),
                           settings.labelbox_project_id, endpoint=settings.labelbox_endpoint,
                           rest_endpoint=settings.labelbox_rest_endpoint,
                           app_url=settings.labelbox_app_url,
                           import_kind=settings.labelbox_import_kind,
                           poll_interval=settings.import_poll_interval,
                           timeout=settings.import_timeout)


def make_deliverer(settings: Settings, outbox: Outbox, store: PredictionStore | None,
                   overrides: Overrides, wake: threading.Event | None = None) -> Deliverer:
    converter = GroundTruthConverter(
        outbox.get_label_config, overrides, resolver_from_store(store),
        (lambda: store.feature_names()) if store is not None else (lambda: set()),
        include_relations=settings.labelbox_import_kind == "mal")
    policy = DeliveryPolicy(settings.batch_size, settings.batch_max_wait, settings.max_attempts,
                            settings.retry_base, settings.retry_max, settings.lease_seconds,
                            settings.retention_days)
    return Deliverer(outbox, make_sink(settings), converter, policy, wake)


def make_reconciler(settings: Settings, outbox: Outbox) -> Reconciler | None:
    if not (settings.label_studio_url and settings.label_studio_api_key):
        return None
    return Reconciler(outbox, LabelStudioApi(settings.label_studio_url,
                                             settings.label_studio_api_key.get_secret_value()))


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.overrides = Overrides.load(settings.mapping)
        self.default_label_config = (settings.label_config.read_text(encoding="utf-8")
                                     if settings.label_config else None)
        self.store: PredictionStore | None = None
        self.predictor: Predictor | None = None
        self.model_version = settings.model_version or EMPTY_MODEL_VERSION
        self.outbox = Outbox(settings.outbox_db)
        self._known_configs: set[str] = set()
        self._wake = threading.Event()
        self._open_index()
        self.deliverer: Deliverer | DeliveryProcess | None = None
        if settings.delivery_worker == "process":
            self.deliverer = DeliveryProcess(as_env(settings))
        elif settings.delivery_worker == "thread":
            self.deliverer = make_deliverer(settings, self.outbox, self.store, self.overrides,
                                            self._wake)
        self.reconciler = make_reconciler(settings, self.outbox)

    # ----- predictions --------------------------------------------------------------------
    def _open_index(self) -> None:
        ensure_index(self.settings)
        path = self.settings.predictions_db
        if not path.exists():
            if self.settings.export is not None:
                raise RuntimeError(f"no prediction index at {path}")
            log.warning("no LABELBRIDGE_EXPORT: /predict answers without predictions")
            return
        self.store = PredictionStore(path)
        meta = self.store.meta()
        self.model_version = self.settings.model_version or meta.get("model_version") \
            or EMPTY_MODEL_VERSION
        self.predictor = Predictor(self.store, self.overrides, self.model_version,
                                   self.settings.match_keys)

    @property
    def index_rows(self) -> int:
        return self.store.count() if self.store else 0

    def predict(self, tasks: list[dict], label_config: str) -> list[bytes]:
        if self.predictor is None:
            return [NO_PREDICTION] * len(tasks)
        return self.predictor.predict(tasks, label_config)

    def predictor_prepare_later(self, label_config: str) -> None:
        if self.predictor is not None:
            self.predictor.prepare_in_background(label_config)

    # ----- webhook events -----------------------------------------------------------------
    def events(self, parsed: ParsedWebhook, source: str) -> list[IncomingEvent]:
        config_hash = label_config_hash(parsed.label_config) if parsed.label_config else None
        return [IncomingEvent(kind=c.kind, annotation_id=c.annotation_id,  # type: ignore[arg-type]
                              project_id=c.project_id, task_id=c.task_id,
                              updated_at=c.updated_at, payload=c.payload, source=source,
                              reason=c.reason, label_config_hash=config_hash,
                              incarnation=c.created_at)
                for c in parsed.changes]

    def remember_config(self, parsed: ParsedWebhook) -> None:
        if parsed.label_config:
            h = label_config_hash(parsed.label_config)
            if h not in self._known_configs:
                self.outbox.put_label_config(h, parsed.label_config)
                self._known_configs.add(h)

    async def accept(self, parsed: ParsedWebhook, source: str) -> AppendResult:
        self.remember_config(parsed)
        result = await self.outbox.append_async(self.events(parsed, source))
        self._wake.set()
        return result

    async def reject(self, body: bytes, reason: str, headers: dict[str, str]) -> None:
        try:
            await asyncio.to_thread(self.outbox.reject, body, reason, headers)
        except OutboxUnavailable as exc:   # the caller still gets its 4xx, not a 503
            log.warning("a rejected webhook body was not kept: %s", exc)

    # ----- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.webhook_token is None:
            log.warning("LABELBRIDGE_WEBHOOK_TOKEN is not set: /webhook accepts events from "
                        "anyone who can reach it")
        if self.default_label_config and self.predictor is not None:
            self.predictor.prepare_in_background(self.default_label_config)
        self.check_mapping()
        target = (f"Labelbox project {self.settings.labelbox_project_id}"
                  if self.settings.sink == "labelbox"
                  else f"NDJSON files in {self.settings.file_sink_dir}")
        if self.deliverer is None:
            log.info("LABELBRIDGE_DELIVERY_WORKER=off: run `labelbridge deliver` to deliver "
                     "ground truth to %s", target)
        else:
            self.deliverer.start()
            log.info("delivering ground truth to %s (worker: %s)", target,
                     self.settings.delivery_worker)
        if self.reconciler is not None and self.settings.reconcile_interval > 0:
            self.reconciler.start(self.settings.reconcile_interval,
                                  self.settings.label_studio_project_id)

    def check_mapping(self, timeout: float = DOCTOR_TIMEOUT) -> threading.Thread | None:
        """Run the ``labelbridge doctor`` checks and log every finding; never blocks or stops
        start-up. Files are checked at once; a remote source is read in a background thread."""
        from labelbridge.tools import doctor

        if not doctor.sources_configured(self.settings):
            return None

        def run() -> None:
            try:
                doctor.log_report(doctor.run_checks(self.settings, timeout=timeout), log)
            except Exception:  # a bug in the checks must not take the service down
                log.warning("doctor: the mapping checks failed", exc_info=True)

        if self.settings.label_config is not None and self.settings.ontology is not None:
            run()
            return None
        thread = threading.Thread(target=run, daemon=True, name="labelbridge-doctor")
        thread.start()
        return thread

    def stop(self) -> None:
        if self.reconciler is not None:
            self.reconciler.stop()
        if self.deliverer is not None:
            self.deliverer.stop()
        self.outbox.close()
        if self.store is not None:
            self.store.close()

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_version": self.model_version,
                               "index_rows": self.index_rows,
                               "outbox": self.outbox.status(),
                               "delivery_worker": (self.deliverer.status()
                                                   if isinstance(self.deliverer, DeliveryProcess)
                                                   else {"mode": self.settings.delivery_worker})}
        if self.store is not None:
            out["prepared"] = [{k: v for k, v in c.items() if k != "report"} | {
                "converted": (c["report"] or {}).get("converted"),
                "skipped": (c["report"] or {}).get("skipped")} for c in self.store.contexts()]
        return out
