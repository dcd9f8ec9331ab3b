"""Commands that run the service: serve, index, deliver, healthcheck."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelbridge.labelbox.export import ExportError
from labelbridge.labelstudio.mapping import MappingError
from labelbridge.model.sink import PermanentError, TransientError
from labelbridge.service.cli.common import (atomic_output, counting_progress, err, fail,
                                            load_mapping, output_error, print_report,
                                            row_progress, settings_or_exit, setup_logging)

def serve() -> None:
    """Serve the ML backend and the webhook (settings from the environment)."""
    from labelbridge.service import serving
    from labelbridge.service.runtime import ensure_index

    settings = settings_or_exit()
    setup_logging(settings.log_level, settings)
    problem = serving.data_dir_problem(settings)
    if problem:
        fail(problem)
    if settings.prediction_source != "none":
        try:
            with row_progress(f"indexing ({settings.prediction_source})") as bar:
                ensure_index(settings, bar.update, bar.total)
        except ExportError as exc:
            fail(f"LABELBRIDGE_EXPORT: {exc}")
        except (TransientError, PermanentError) as exc:  # the server tries again later
            err.print(f"[yellow]warning:[/] the model run was not indexed: {exc}")
    serving.run(settings)


def index(export: Optional[Path] = typer.Option(None, help="Labelbox export file or folder "
                                                "(default: LABELBRIDGE_EXPORT)"),
          label_config: Optional[Path] = typer.Option(
              None, help="Also convert and validate predictions for this label config now"),
          workers: Optional[int] = typer.Option(
              None, min=0, help="Processes that read the export (default: one per CPU for "
              "an export of 32 MiB or more; 0: read it in this process)"),
          report: Optional[Path] = typer.Option(
              None, help="With --label-config: write every loss of the prepared predictions as "
              "one JSON line (data row, feature, region id, field, reason) to this file"),
          model_run: Optional[str] = typer.Option(
              None, "--model-run", help="Export this Labelbox model run through the SDK "
              "(with its predictions) and index it; needs LABELBOX_API_KEY")) -> None:
    """Build the prediction index from a Labelbox export (streaming, bounded memory).

    The new index replaces the old one atomically. Exit codes: 0 indexed (losses are listed,
    not fatal); 1 the export could not be read (no index is written); 2 bad usage or settings.
    """
    if report and not label_config:
        fail("--report lists the losses of prepared predictions: pass --label-config too")
    if model_run:
        _index_model_run(model_run, label_config, report)
        return
    from labelbridge.predictions.indexer import index_export
    from labelbridge.service.runtime import mask_source, selection

    settings = settings_or_exit(**({"LABELBRIDGE_EXPORT": export} if export else {}))
    setup_logging(settings.log_level)
    if settings.export is None:
        fail("no export: pass --export PATH or set LABELBRIDGE_EXPORT")
    mapping = load_mapping(label_config, settings.mapping) if label_config else None
    try:
        with counting_progress(f"indexing {settings.export}") as progress:
            result = index_export(settings.export, settings.predictions_db, selection(settings),
                                  progress, workers, masks=mask_source(settings))
    except ExportError as exc:
        fail(f"{exc} (no index written)", 1)
        return
    err.print(f"indexed {result.rows:,} data rows ({result.skipped_rows:,} without "
              f"{settings.export_source}); model version {result.model_version}")
    _publish(settings)
    if mapping is not None:
        _prepare(settings, mapping, result, report)


def _publish(settings) -> None:
    from labelbridge.service.runtime import publish_built

    gen = publish_built(settings)
    if gen is not None:
        err.print(f"published to LABELBRIDGE_DATABASE_URL as generation {gen}: every replica "
                  "serves it within seconds")


def _prepare(settings, mapping, result, report: Path | None) -> None:
    """Convert and validate every indexed row for a label config now (and list its losses)."""
    from labelbridge.predictions.predictor import Predictor
    from labelbridge.service.runtime import index_store

    store = index_store(settings)
    predictor = Predictor(store, mapping.overrides,
                          settings.model_version or result.model_version, settings.match_keys)
    with counting_progress("preparing predictions", result.rows) as progress:
        ctx = predictor.prepare(mapping.label_config, progress)
    if report:
        try:
            with atomic_output(report) as fh:
                for lines in store.iter_losses(ctx.key):
                    fh.write(lines)
        except OSError as exc:
            output_error(exc)
    print_report(ctx.report, "Labelbox -> Label Studio", report)


def _index_model_run(run_id: str, label_config: Path | None, report: Path | None) -> None:
    from labelbridge.predictions import versions
    from labelbridge.predictions.sources import RunSource
    from labelbridge.service.runtime import mask_source, model_run_client

    settings = settings_or_exit()
    setup_logging(settings.log_level)
    if not settings.labelbox_api_key:
        fail("--model-run needs LABELBOX_API_KEY (and LABELBOX_PROJECT_ID)")
    mapping = load_mapping(label_config, settings.mapping) if label_config else None
    source = RunSource(model_run_client(settings), run_id=run_id,
                       version_from=settings.model_version_from, source=settings.export_source,
                       masks=mask_source(settings))
    try:
        offer = source.offer()
        with row_progress(f"exporting {offer.describe}") as bar:
            result = source.build(offer, settings.predictions_db, bar.update, bar.total)
    except (TransientError, PermanentError, ExportError) as exc:
        fail(str(exc), 1)
        return
    versions.remember(settings.data_dir, settings.model_version or result.model_version)
    err.print(f"indexed {result.rows:,} data rows ({result.skipped_rows:,} without "
              f"{settings.export_source}); model version {result.model_version}")
    _publish(settings)
    if mapping is not None:
        _prepare(settings, mapping, result, report)


def deliver(once: bool = typer.Option(False, "--once", help="Deliver what is due, then exit")
            ) -> None:
    """Run the delivery worker alone (the server runs it too)."""
    import signal
    import threading

    from labelbridge.groundtruth.outbox import Outbox
    from labelbridge.labelstudio.mapping import Overrides
    from labelbridge.service.runtime import index_store, make_deliverer

    settings = settings_or_exit()
    setup_logging(settings.log_level, settings)
    store = index_store(settings)
    try:
        overrides = Overrides.load(settings.mapping)
    except MappingError as exc:
        fail(str(exc))
        return
    outbox = Outbox(settings.outbox_location)
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


def healthcheck(timeout: float = typer.Option(2.0, help="Seconds to wait"),
                live: bool = typer.Option(False, "--live", help="Only check that the server "
                                          "answers (GET /health), not that it is ready")) -> None:
    """Exit 0 when the local service is ready (GET /ready), 1 when it is degraded or does not
    answer, naming why (the Docker HEALTHCHECK)."""
    import httpx

    settings = settings_or_exit()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    auth = (settings.basic_auth_user, settings.basic_auth_pass.get_secret_value()) \
        if settings.basic_auth_user and settings.basic_auth_pass else None
    path = "/health" if live else "/ready"
    try:
        r = httpx.get(f"http://{host}:{settings.port}{path}", auth=auth, timeout=timeout)
        body = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        fail(f"health check failed: {exc}", 1)
        return
    if r.status_code == 200 and body.get("status") in ("UP", "ready"):
        err.print(body["status"])
        return
    reasons = body.get("reasons") or [str(body.get("detail") or body)]
    fail(f"{body.get('status') or f'HTTP {r.status_code}'}: " + "; ".join(reasons), 1)
