"""The service's parts, wired from the settings: index, predictor, outbox, workers."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from labelbridge.groundtruth.close_loop import LoopCloser
from labelbridge.groundtruth.converter import (GroundTruthConverter, media_size_from_store,
                                               resolver_from_store)
from labelbridge.groundtruth.delivery import Deliverer, DeliveryPolicy
from labelbridge.groundtruth.edit_recorder import EditRecorder
from labelbridge.groundtruth.edit_report import EditStore, totals
from labelbridge.groundtruth.file_sink import FileSink
from labelbridge.groundtruth.outbox import AppendResult, IncomingEvent, Outbox
from labelbridge.groundtruth.reconcile import Reconciler
from labelbridge.groundtruth.worker_process import DeliveryProcess
from labelbridge.labelbox.export import Selection
from labelbridge.labelbox.gateway import LabelboxGateway
from labelbridge.labelbox.mask_fetch import MaskFetcher
from labelbridge.labelbox.masks import MaskSource
from labelbridge.labelbox.model_runs import ModelRunClient
from labelbridge.labelstudio.api import LabelStudioApi
from labelbridge.labelstudio.mapping import Overrides
from labelbridge.labelstudio.webhooks import ParsedWebhook, label_config_hash
from labelbridge.model.sink import Sink
from labelbridge.postgres import Database, Once, Solo
from labelbridge.postgres.once import Jobs
from labelbridge.predictions.homes import FileHome, Home, SharedHome, remove_built
from labelbridge.predictions.live import EMPTY_MODEL_VERSION, LiveIndex, Served
from labelbridge.predictions.pg_store import PgIndex, PgPredictionStore
from labelbridge.predictions.predictor import NO_PREDICTION, Predictor
from labelbridge.predictions.served import served_lookup
from labelbridge.predictions.sources import ExportFileSource, RunSource, Source
from labelbridge.predictions.store import PredictionStore
from labelbridge.service.sink_metrics import MeteredSink
from labelbridge.settings import Settings, as_env
from labelbridge.tools.features import ProjectFeatures

log = logging.getLogger(__name__)
DOCTOR_TIMEOUT = 10.0   # seconds the start-up mapping check waits for Label Studio / Labelbox


def selection(settings: Settings) -> Selection:
    return Selection(settings.export_source, settings.labelbox_model_run_id,
                     settings.labelbox_project_id)


def mask_source(settings: Settings) -> MaskSource:
    """How the index reads mask PNGs: with the Labelbox API key (sent to the configured
    Labelbox hosts only), or without one (local and inline masks still read)."""
    key = settings.labelbox_api_key.get_secret_value() if settings.labelbox_api_key else None
    return MaskSource(MaskFetcher.for_labelbox(key, (
        settings.labelbox_endpoint, settings.labelbox_rest_endpoint, settings.labelbox_app_url)))



def model_run_client(settings: Settings) -> ModelRunClient:
    assert settings.labelbox_api_key
    return ModelRunClient(settings.labelbox_api_key.get_secret_value(),
                          endpoint=settings.labelbox_endpoint,
                          rest_endpoint=settings.labelbox_rest_endpoint,
                          app_url=settings.labelbox_app_url,
                          poll_interval=settings.import_poll_interval,
                          timeout=settings.import_timeout)


def index_source(settings: Settings) -> Source | None:
    """The export file, the model run, or the newest run of the model; None: no source."""
    kind = settings.prediction_source
    if kind == "export":
        assert settings.export is not None
        return ExportFileSource(settings.export, selection(settings), masks=mask_source(settings))
    if kind == "none":
        return None
    return RunSource(model_run_client(settings),
                     run_id=settings.labelbox_model_run_id if kind == "model_run" else None,
                     model_id=settings.labelbox_model_id if kind == "model" else None,
                     pattern=settings.labelbox_model_run_pattern,
                     version_from=settings.model_version_from, source=settings.export_source,
                     masks=mask_source(settings))


def ensure_index(settings: Settings, progress: Callable[[int], None] | None = None,
                 on_total: Callable[[int | None], None] | None = None) -> bool:
    """Build the prediction index when it is missing or its source moved on. True if built."""
    source = index_source(settings)
    if source is None:
        return False
    return index_home(settings, make_jobs(settings)).ensure(source, progress,
                                                            on_total) is not None


def index_home(settings: Settings, jobs: Jobs) -> Home:
    """The SQLite file of the index, or the database every replica shares."""
    if not settings.shared_database:
        return FileHome(settings.predictions_db)
    return SharedHome(PgIndex(Database(settings.shared_database, max_size=4,
                                       name="labelbridge-index"), settings.data_dir), jobs)


def index_store(settings: Settings, pinned: bool = False
                ) -> PredictionStore | PgPredictionStore | None:
    """A store that follows the current index (the delivery worker's), or that keeps reading
    the one current now (``pinned``); None: no index yet."""
    if not settings.shared_database:
        return PredictionStore(settings.predictions_db, follow=not pinned) \
            if settings.predictions_db.exists() else None
    index = PgIndex(Database(settings.shared_database, max_size=2, name="labelbridge-index"),
                    settings.data_dir)
    current = index.current()
    return None if current is None else index.open(current if pinned else None)


def publish_built(settings: Settings) -> int | None:
    """With a shared database: the index ``labelbridge index`` just built in the data dir
    becomes the current generation of every replica (and the local file goes). Its number."""
    if not settings.shared_database:
        return None
    db = Database(settings.shared_database, max_size=2, name="labelbridge-index")
    try:
        gen = PgIndex(db, settings.data_dir).publish(
            settings.predictions_db, f"labelbridge index@{socket.gethostname()}")
    finally:
        db.close()
    remove_built(settings.predictions_db)
    return gen


def make_sink(settings: Settings) -> Sink:
    """Labelbox when a key is set; otherwise NDJSON files under the data dir. Metered
    (``service.sink_metrics``)."""
    return MeteredSink(_sink(settings))


def _sink(settings: Settings) -> Sink:
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
        include_relations=settings.labelbox_import_kind == "mal",
        features=ProjectFeatures(settings), media_size=media_size_from_store(store))
    policy = DeliveryPolicy(settings.batch_size, settings.batch_max_wait, settings.max_attempts,
                            settings.retry_base, settings.retry_max, settings.lease_seconds,
                            settings.retention_days)
    recorder = EditRecorder(EditStore(settings.edits_db),
                            served_lookup(store, settings.model_version),
                            close_loop=settings.labelbox_attach_labels or
                            settings.labelbox_edit_metrics)
    return Deliverer(outbox, make_sink(settings), converter, policy, wake, recorder,
                     recorder.deleted)


def make_loop_closer(settings: Settings) -> LoopCloser | None:
    """Ground truth back to the served model run, when asked (LABELBOX_ATTACH_LABELS,
    LABELBOX_EDIT_METRICS)."""
    if not (settings.labelbox_attach_labels or settings.labelbox_edit_metrics):
        return None
    assert settings.labelbox_project_id
    return LoopCloser(EditStore(settings.edits_db), model_run_client(settings),
                      settings.labelbox_project_id, attach=settings.labelbox_attach_labels,
                      metrics=settings.labelbox_edit_metrics)


def make_reconciler(settings: Settings, outbox: Outbox, jobs: Jobs | None = None
                    ) -> Reconciler | None:
    if not (settings.label_studio_url and settings.label_studio_api_key):
        return None
    return Reconciler(outbox, LabelStudioApi(settings.label_studio_url,
                                             settings.label_studio_api_key.get_secret_value()),
                      jobs)


def make_jobs(settings: Settings) -> Jobs:
    """Who runs the work that must run once: this process alone (SQLite), or whichever
    replica holds its advisory lock (the shared PostgreSQL database)."""
    if not settings.shared_database:
        return Solo()
    return Once(Database(settings.shared_database, max_size=3, name="labelbridge-jobs"),
                f"{socket.gethostname()}:{os.getpid()}")


def edit_totals(settings: Settings) -> dict:
    """The edit report's totals (``labelbridge report``), for /metrics."""
    return totals(settings.edits_db)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.overrides = Overrides.load(settings.mapping)
        self.default_label_config = (settings.label_config.read_text(encoding="utf-8")
                                     if settings.label_config else None)
        self.store: PredictionStore | None = None
        self.predictor: Predictor | None = None
        self.model_version = settings.model_version or EMPTY_MODEL_VERSION
        self.outbox = Outbox(settings.outbox_location)
        self.jobs = make_jobs(settings)
        self._known_configs: set[str] = set()
        self._wake = threading.Event()
        self.live = self._open_index()
        self.deliverer: Deliverer | DeliveryProcess | None = None
        # The worker process keeps its metrics in files here; /metrics reads them.
        self.worker_metrics_dir: Path | None = None
        self._stopping: list[threading.Thread] | None = None
        if settings.delivery_worker == "process":
            self.worker_metrics_dir = Path(tempfile.mkdtemp(prefix="labelbridge-metrics-"))
            self.deliverer = DeliveryProcess({**as_env(settings), "PROMETHEUS_MULTIPROC_DIR":
                                              str(self.worker_metrics_dir)})
        elif settings.delivery_worker == "thread":
            store = index_store(settings) if self.store is not None else None
            self.deliverer = make_deliverer(settings, self.outbox, store, self.overrides,
                                            self._wake)
        self.reconciler = make_reconciler(settings, self.outbox, self.jobs)
        self.loop_closer = make_loop_closer(settings)

    # ----- predictions --------------------------------------------------------------------
    def _open_index(self) -> LiveIndex:
        """Serve the index of the configured source (built first if it moved on); a newer one
        replaces it later (``predictions.live``)."""
        live = LiveIndex(index_home(self.settings, self.jobs), index_source(self.settings),
                         lambda store, version: Predictor(store, self.overrides, version,
                                                          self.settings.match_keys),
                         self.settings.model_version, self.settings.refresh_interval)
        live.on_swap = self._serve
        if live.open() is None:
            if self.settings.prediction_source == "export":
                raise RuntimeError(f"no prediction index at {self.settings.predictions_db}")
            log.warning("no prediction index yet (%s): /predict answers without predictions",
                        live.last_error or "no LABELBRIDGE_EXPORT, LABELBOX_MODEL_RUN_ID or "
                        "LABELBOX_MODEL_ID")
        return live

    def _serve(self, served: Served) -> None:
        # the model version last: /setup reads it, and then /predict must find the new one
        self.store, self.predictor, self.model_version = (served.store, served.predictor,
                                                          served.model_version)

    @property
    def index_rows(self) -> int:
        return self.store.count() if self.store else 0

    def predict(self, tasks: list[dict], label_config: str) -> list[bytes]:
        if self.predictor is None:
            return [NO_PREDICTION] * len(tasks)
        return self.predictor.predict(tasks, label_config)

    def predictor_prepare_later(self, label_config: str) -> None:
        self.live.label_configs.add(label_config)
        self.live.poke()  # Label Studio calls /setup before every prediction batch
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

    def accept_now(self, parsed: ParsedWebhook, source: str) -> AppendResult:
        """``accept`` for a caller without an event loop (the label-studio-ml model's ``fit``):
        one transaction, durable when it returns."""
        self.remember_config(parsed)
        result = self.outbox.append(self.events(parsed, source))
        self._wake.set()
        return result

    # ----- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.webhook_token is None:
            log.warning("LABELBRIDGE_WEBHOOK_TOKEN is not set: /webhook accepts events from "
                        "anyone who can reach it")
        if self.default_label_config and self.predictor is not None:
            self.predictor.prepare_in_background(self.default_label_config)
        if self.default_label_config:
            self.live.label_configs.add(self.default_label_config)
        self.live.start()
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
        if self.loop_closer is not None:
            self.loop_closer.start(self.settings.refresh_interval or 300.0)

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

    def begin_stop(self) -> None:
        """Tell the delivery worker to finish its current step and reconciliation to stop,
        without waiting (at SIGTERM, while the server still answers what is in flight);
        ``stop`` waits for both, together."""
        if self._stopping is not None:
            return
        parts = [(self.deliverer.stop, (self.settings.shutdown_timeout,))] \
            if self.deliverer is not None else []
        if self.reconciler is not None:
            parts.append((self.reconciler.stop, ()))
        if self.loop_closer is not None:
            parts.append((self.loop_closer.stop, ()))
        self._stopping = [threading.Thread(target=stop, args=args, daemon=True,
                                           name="stop-workers") for stop, args in parts]
        for thread in self._stopping:
            thread.start()

    def stop(self) -> None:
        self.begin_stop()
        deadline = time.monotonic() + self.settings.shutdown_timeout + 1.0
        for thread in self._stopping or ():
            thread.join(max(0.0, deadline - time.monotonic()))
        self.outbox.close()
        self.live.stop()
        if self.worker_metrics_dir is not None:
            shutil.rmtree(self.worker_metrics_dir, ignore_errors=True)

    def metrics(self) -> dict[str, Any]:
        """Figures read from the disk (call off the event loop); ``outbox`` is None, with
        ``outbox_error``, when the outbox does not answer."""
        out: dict[str, Any] = {"model_version": self.model_version,
                               "index_rows": self.index_rows,
                               "delivery_worker": (self.deliverer.status()
                                                   if isinstance(self.deliverer, DeliveryProcess)
                                                   else {"mode": self.settings.delivery_worker})}
        try:
            out["outbox"] = self.outbox.status()
        except Exception as exc:  # any failure of the outbox is a readiness reason, not a 500
            out["outbox"], out["outbox_error"] = None, f"{type(exc).__name__}: {exc}"
        out["index"] = self.live.status()
        out["edits"] = edit_totals(self.settings)
        if self.store is not None:
            out["prepared"] = [{k: v for k, v in c.items() if k != "report"} | {
                "converted": (c["report"] or {}).get("converted"),
                "skipped": (c["report"] or {}).get("skipped"),
                "losses": f"labelbridge losses --context {c['context'][:12]}"}
                for c in self.store.contexts()]
        return out
