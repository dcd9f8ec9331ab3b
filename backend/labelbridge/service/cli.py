"""The ``labelbridge`` command."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from labelbridge.labelbox.export import ExportError, Selection
from labelbridge.labelstudio.mapping import Mapping, MappingError, Overrides
from labelbridge.model.report import ConversionReport
from labelbridge.settings import Settings, SettingsError, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Bridge between Labelbox and Label Studio.")
convert_app = typer.Typer(no_args_is_help=True, help="Bulk conversions between the two formats.")
app.add_typer(convert_app, name="convert")
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings_or_exit(**overrides) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        fail(str(exc))
        raise  # unreachable


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


@contextmanager
def counting_progress(description: str, total: int | None = None) -> Iterator:
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:,} rows"), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.update(task, completed=n)


def print_report(report: ConversionReport, title: str) -> None:
    table = Table(title=title, show_lines=False)
    for col in ("kind", "converted", "skipped", "why skipped"):
        table.add_column(col)
    for kind, ok, skipped, reasons in report.rows():
        table.add_row(kind, str(ok), str(skipped), reasons)
    err.print(table)


def load_mapping(label_config: Path, mapping: Path | None, names=()) -> Mapping:
    try:
        xml = label_config.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"--label-config {label_config}: {exc.strerror}")
    try:
        return Mapping(xml, Overrides.load(mapping), names)
    except MappingError as exc:
        fail(str(exc))
        raise


@app.command()
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


@app.command()
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


@convert_app.command("lb2ls")
def lb2ls(export: Path = typer.Option(..., help="Labelbox export-v2 file, folder or .gz"),
          label_config: Path = typer.Option(..., help="Label Studio label config XML"),
          mapping: Optional[Path] = typer.Option(None, help="Mapping YAML (overrides names)"),
          out: Optional[Path] = typer.Option(None, help="Output JSON file (default: stdout)"),
          source: str = typer.Option("predictions", help="predictions | run_labels | "
                                     "project_labels"),
          model_run: Optional[str] = typer.Option(None, help="Model run id (when several)"),
          project: Optional[str] = typer.Option(None, help="Labelbox project id (project_labels)"),
          ) -> None:
    """Labelbox export -> Label Studio tasks with predictions, ready to import."""
    from labelbridge.tools.convert import ConvertError, lb_to_ls

    if source not in ("predictions", "run_labels", "project_labels"):
        fail(f"--source: must be predictions, run_labels or project_labels, got {source!r}")
    m = load_mapping(label_config, mapping)
    report = ConversionReport()
    sink = open(out, "wb") if out else sys.stdout.buffer
    try:
        count = lb_to_ls(export, m, Selection(source, model_run, project), sink,  # type: ignore[arg-type]
                         report)
    except (ExportError, ConvertError) as exc:
        fail(str(exc))
        return
    finally:
        if out:
            sink.close()
    print_report(report, f"Labelbox -> Label Studio: {count} tasks")


@convert_app.command("ls2lb")
def ls2lb(tasks: Path = typer.Option(..., help="Label Studio JSON export (list of tasks)"),
          label_config: Path = typer.Option(..., help="Label Studio label config XML"),
          mapping: Optional[Path] = typer.Option(None, help="Mapping YAML (overrides names)"),
          out: Optional[Path] = typer.Option(None, help="Output NDJSON file (default: stdout)"),
          kind: str = typer.Option("ground_truth", help="ground_truth | mal (relationships "
                                   "only with mal)")) -> None:
    """Label Studio JSON export -> Labelbox NDJSON (one line per annotation)."""
    from labelbridge.tools.convert import ConvertError, ls_to_lb

    if kind not in ("ground_truth", "mal"):
        fail(f"--kind: must be ground_truth or mal, got {kind!r}")
    if not tasks.is_file():
        fail(f"--tasks {tasks}: no such file")
    m = load_mapping(label_config, mapping)
    report = ConversionReport()
    sink = open(out, "wb") if out else sys.stdout.buffer
    try:
        lines = ls_to_lb(tasks, m, sink, report, include_relations=kind == "mal")
    except ConvertError as exc:
        fail(str(exc))
        return
    finally:
        if out:
            sink.close()
    print_report(report, f"Label Studio -> Labelbox: {lines} NDJSON lines")


@app.command()
def doctor(label_config: Optional[Path] = typer.Option(
               None, "--label-config", help="Label Studio label config XML (default: "
               "LABELBRIDGE_LABEL_CONFIG, else the project's config from Label Studio)"),
           ontology: Optional[Path] = typer.Option(
               None, "--ontology", help="Labelbox ontology JSON, as project.ontology().normalized "
               "(default: LABELBRIDGE_ONTOLOGY, else from Labelbox with LABELBOX_API_KEY)"),
           mapping: Optional[Path] = typer.Option(None, "--mapping", help="Mapping YAML "
                                                  "(default: LABELBRIDGE_MAPPING)"),
           ls_project: Optional[int] = typer.Option(
               None, "--ls-project", help="Read the label config of this Label Studio project "
               "(LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)"),
           as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON on "
                                        "stdout"),
           timeout: float = typer.Option(30.0, help="Seconds to wait for Label Studio and "
                                         "Labelbox")) -> None:
    """Check that the label config (+ mapping) and the Labelbox ontology map, both ways.

    Exit 0 when everything maps (warnings, declared losses, alone still exit 0).

    Exit 1 when something does not map, 2 on bad usage or settings.
    """
    import json

    from labelbridge.tools.doctor import run_checks

    for path, option in ((label_config, "--label-config"), (ontology, "--ontology"),
                         (mapping, "--mapping")):
        if path is not None and not path.is_file():
            fail(f"{option} {path}: no such file")
    if ls_project is not None and ls_project < 1:
        fail(f"--ls-project: must be a positive project id, got {ls_project}")
    if timeout <= 0:
        fail(f"--timeout: must be positive, got {timeout:g}")
    settings = settings_or_exit()
    # the SDK logs a network failure as an error before raising it; the finding says it already
    logging.getLogger("lbox.request_client").setLevel(logging.CRITICAL)
    report = run_checks(settings, label_config, ontology, mapping, ls_project, timeout=timeout)
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    sources = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in report.sources.items())
    if report.findings:
        table = Table(title=f"labelbridge doctor ({sources})", show_lines=False)
        for col in ("severity", "code", "message"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            style = "red" if f.severity == "error" else "yellow"
            table.add_row(f"[{style}]{f.severity}[/]", f.code, f.message)
        err.print(table)
    if report.ok:
        note = f" ({len(report.warnings)} warnings)" if report.warnings else ""
        err.print(f"[green]ok:[/] everything maps{note} ({sources})", highlight=False)
        raise typer.Exit(0)
    err.print(f"[bold red]{len(report.errors)} errors[/], {len(report.warnings)} warnings",
              highlight=False)
    raise typer.Exit(1)


outbox_app = typer.Typer(no_args_is_help=True, help="Inspect and requeue the delivery outbox.")
app.add_typer(outbox_app, name="outbox")


def open_outbox(settings: Settings):
    from labelbridge.groundtruth.outbox import Outbox

    if not settings.outbox_db.exists():
        fail(f"no outbox at {settings.outbox_db} (LABELBRIDGE_DATA_DIR={settings.data_dir})")
    return Outbox(settings.outbox_db)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


@outbox_app.command("status")
def outbox_status(json_out: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """What is pending, in flight, delivered, failed and why."""
    import orjson

    settings = settings_or_exit()
    ob = open_outbox(settings)
    st = ob.status()
    if json_out:
        sys.stdout.write(orjson.dumps(st, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table(title=f"outbox {settings.outbox_db}")
    table.add_column("state")
    table.add_column("items", justify="right")
    for state, n in st["counts"].items():
        table.add_row(state, str(n))
    err.print(table)
    err.print(f"oldest pending: {_age(st['oldest_pending_age_s'])}; due now: {st['due']}; "
              f"dead letters: {st['dead_letters']}; rejected bodies: {st['rejected']}; "
              f"sink: {settings.sink}")
    failed = ob.items("failed", limit=20)
    if failed:
        dead = Table(title="dead letters (newest first)")
        for col in ("item", "annotation", "task", "attempts", "reason"):
            dead.add_column(col)
        for it in failed:
            dead.add_row(str(it["id"]), str(it["annotation_id"]), str(it["task_id"]),
                         str(it["attempts"]), it["last_error"] or "")
        err.print(dead)


@outbox_app.command("dead")
def outbox_dead(limit: int = typer.Option(100, help="How many")) -> None:
    """List dead letters with the reason Labelbox (or the conversion) gave."""
    settings = settings_or_exit()
    for it in open_outbox(settings).items("failed", limit=limit):
        typer.echo(f"item {it['id']}\tannotation {it['annotation_id']}\ttask {it['task_id']}\t"
                   f"attempts {it['attempts']}\t{it['last_error']}")


@outbox_app.command("retry")
def outbox_retry(item: Optional[list[int]] = typer.Argument(None, help="Item ids (default: all "
                                                             "dead letters)")) -> None:
    """Requeue dead letters (after fixing what made them fail)."""
    settings = settings_or_exit()
    n = open_outbox(settings).requeue(item or None)
    err.print(f"requeued {n} item(s)")


@outbox_app.command("rejected")
def outbox_rejected(limit: int = typer.Option(20, help="How many"),
                    show_body: bool = typer.Option(False, "--body", help="Print the bodies")) -> None:
    """Webhook bodies that were refused (4xx), kept for inspection."""
    settings = settings_or_exit()
    for r in open_outbox(settings).rejected(limit):
        typer.echo(f"#{r['id']}\t{r['reason']}\t{r['body_size']} bytes"
                   + (" (truncated)" if r["truncated"] else ""))
        if show_body:
            typer.echo(r["body"].decode("utf-8", "replace"))


@app.command()
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


@app.command()
def reconcile(project: Optional[int] = typer.Option(None, help="Label Studio project id "
                                                    "(default: LABEL_STUDIO_PROJECT_ID, else "
                                                    "every project seen)"),
              full: bool = typer.Option(False, help="Ignore the cursor: re-read every task"),
              deliver_now: bool = typer.Option(False, "--deliver", help="Deliver afterwards")
              ) -> None:
    """Queue the annotation changes Label Studio has and the outbox has not seen."""
    from labelbridge.groundtruth.outbox import Outbox
    from labelbridge.labelstudio.api import LabelStudioUnavailable
    from labelbridge.service.runtime import make_reconciler

    settings = settings_or_exit()
    setup_logging(settings.log_level)
    outbox = Outbox(settings.outbox_db)
    reconciler = make_reconciler(settings, outbox)
    if reconciler is None:
        fail("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to reconcile")
        return
    projects = reconciler.projects(project or settings.label_studio_project_id)
    if not projects:
        fail("no project to reconcile: pass --project or set LABEL_STUDIO_PROJECT_ID")
    try:
        for pid in projects:
            r = reconciler.run(pid, full=full)
            err.print(f"project {pid}: {r.tasks_read} tasks read; queued {r.upserts} "
                      f"annotation(s) and {r.deletes} deletion(s); {r.duplicates} already known")
    except LabelStudioUnavailable as exc:
        fail(str(exc), 1)
    outbox.close()
    if deliver_now:
        deliver(once=True)


@app.command()
def connect(ls_url: str = typer.Option(..., help="Label Studio URL, e.g. http://label-studio:8080"),
            ls_token: str = typer.Option(..., envvar="LABEL_STUDIO_API_KEY",
                                         help="Label Studio API token (legacy token or PAT)"),
            project: int = typer.Option(..., help="Label Studio project id"),
            backend_url: Optional[str] = typer.Option(None, help="URL Label Studio reaches the "
                                                      "bridge at (default: from "
                                                      "LABELBRIDGE_HOST/PORT)")) -> None:
    """Wire a Label Studio project to the bridge: ML backend, webhook header, mapping check."""
    from pydantic import SecretStr

    from labelbridge.labelstudio.api import LabelStudioApi, LabelStudioUnavailable
    from labelbridge.tools import doctor
    from labelbridge.tools.connect import connect as wire

    settings = settings_or_exit()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = backend_url or f"http://{host}:{settings.port}"
    try:
        result = wire(LabelStudioApi(ls_url, ls_token), project, url, settings)
    except LabelStudioUnavailable as exc:
        fail(str(exc), 1)
        return
    for change in result.changes or ["already connected: nothing changed"]:
        err.print(change)
    if not settings.webhook_token:
        err.print("[yellow]warning:[/] LABELBRIDGE_WEBHOOK_TOKEN is not set: the webhook has no "
                  "shared secret")
    report = doctor.run_checks(settings.model_copy(update={
        "label_studio_url": ls_url, "label_studio_api_key": SecretStr(ls_token)}),
        ls_project=project)
    errors = [f for f in report.errors if f.code != "not-configured"]
    if any(f.code == "not-configured" for f in report.errors):
        err.print("note: no Labelbox ontology configured (LABELBRIDGE_ONTOLOGY, or "
                  "LABELBOX_API_KEY + LABELBOX_PROJECT_ID): names were not checked")
    for finding in errors + report.warnings:
        colour = "yellow" if finding.severity == "warning" else "red"
        err.print(f"[{colour}]{finding.severity}:[/] {finding.message}", highlight=False)
    if errors:
        err.print("connected, but these names cannot be mapped (see `labelbridge doctor`)")
        raise typer.Exit(1)


@app.command()
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
    err.print("UP")


if __name__ == "__main__":
    app()
