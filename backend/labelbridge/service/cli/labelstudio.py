"""Commands that talk to Label Studio: doctor, reconcile, connect."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from labelbridge.service.cli.common import err, fail, settings_or_exit, setup_logging

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
        from labelbridge.service.cli.run import deliver
        deliver(once=True)


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
