"""Commands that run the service: serve, index, deliver, healthcheck."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelbridge.labelbox.export import ExportError
from labelbridge.labelstudio.mapping import MappingError
from labelbridge.service.cli.common import (counting_progress, err, fail, load_mapping, print_report,
                                            settings_or_exit, setup_logging)

def serve() -> None:
    """Serve the ML backend and the webhook (settings from the environment)."""
    import uvicorn

    from labelbridge.service.runtime import ensure_index
    from labelbridge.service.server import create_app

    settings = settings_or_exit()
    setup_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.export is not None:
        try:
            with counting_progress(f"indexing {settings.export}") as progress:
                ensure_index(settings, progress)
        except ExportError as exc:
            fail(f"LABELBRIDGE_EXPORT: {exc}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), access_log=False)


def index(export: Optional[Path] = typer.Option(None, help="Labelbox export file or folder "
                                                "(default: LABELBRIDGE_EXPORT)"),
          label_config: Optional[Path] = typer.Option(
              None, help="Also convert and validate predictions for this label config now"),
          workers: Optional[int] = typer.Option(
              None, min=0, help="Processes that read the export (default: one per CPU for "
              "an export of 32 MiB or more; 0: read it in this process)")) -> None:
    """Build the prediction index from a Labelbox export (streaming, bounded memory)."""
    from labelbridge.predictions.indexer import index_export
    from labelbridge.predictions.predictor import Predictor
    from labelbridge.predictions.store import PredictionStore
    from labelbridge.service.runtime import selection

    settings = settings_or_exit(**({"LABELBRIDGE_EXPORT": export} if export else {}))
    setup_logging(settings.log_level)
    if settings.export is None:
        fail("no export: pass --export PATH or set LABELBRIDGE_EXPORT")
    try:
        with counting_progress(f"indexing {settings.export}") as progress:
            result = index_export(settings.export, settings.predictions_db, selection(settings),
                                  progress, workers)
    except ExportError as exc:
        fail(str(exc))
        return
    err.print(f"indexed {result.rows:,} data rows ({result.skipped_rows:,} without "
              f"{settings.export_source}); model version {result.model_version}")
    if label_config:
        store = PredictionStore(settings.predictions_db)
        mapping = load_mapping(label_config, settings.mapping)  # fail early on a bad config
        predictor = Predictor(store, mapping.overrides,
                              settings.model_version or result.model_version, settings.match_keys)
        with counting_progress("preparing predictions", result.rows) as progress:
            ctx = predictor.prepare(mapping.label_config, progress)
        print_report(ctx.report, "Labelbox -> Label Studio")


def deliver(once: bool = typer.Option(False, "--once", help="Deliver what is due, then exit")
            ) -> None:
    """Run the delivery worker alone (the server runs it too)."""
    import signal
    import threading

    from labelbridge.groundtruth.outbox import Outbox
    from labelbridge.labelstudio.mapping import Overrides
    from labelbridge.predictions.store import PredictionStore
    from labelbridge.service.runtime import make_deliverer

    settings = settings_or_exit()
    setup_logging(settings.log_level)
    store = PredictionStore(settings.predictions_db) if settings.predictions_db.exists() else None
    try:
        overrides = Overrides.load(settings.mapping)
    except MappingError as exc:
        fail(str(exc))
        return
    outbox = Outbox(settings.outbox_db)
    worker = make_deliverer(settings, outbox, store, overrides)
    if once:
        worker.drain()
    else:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        worker.start()
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        worker.stop()
    st = outbox.status()
    outbox.close()
    err.print(f"outbox: {st['counts']}")


def healthcheck(timeout: float = typer.Option(2.0, help="Seconds to wait")) -> None:
    """Exit 0 when the local service answers GET /health (used by the Docker HEALTHCHECK)."""
    import httpx

    settings = settings_or_exit()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    auth = (settings.basic_auth_user, settings.basic_auth_pass.get_secret_value()) \
        if settings.basic_auth_user and settings.basic_auth_pass else None
    try:
        r = httpx.get(f"http://{host}:{settings.port}/health", auth=auth, timeout=timeout)
    except httpx.HTTPError as exc:
        fail(f"health check failed: {exc}", 1)
        return
    if r.status_code != 200 or r.json().get("status") != "UP":
        fail(f"health check failed: HTTP {r.status_code}", 1)
    outbox = r.json().get("outbox") or {}
    if outbox.get("ok") is False:   # webhooks get 503 until this is fixed
        fail(f"health check failed: {outbox.get('error')}", 1)
    err.print("UP")
