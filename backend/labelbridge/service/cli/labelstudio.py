"""Commands that talk to Label Studio: doctor, reconcile, connect.

Each takes ``--ls-url``, ``--ls-token`` and ``--ls-project``, falling back to
``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY`` and ``LABEL_STUDIO_PROJECT_ID``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from labelbridge.service.cli.common import (err, fail, ls_project_option, ls_settings,
                                            ls_token_option, ls_url_option, out, setup_logging)
from labelbridge.settings import Settings


def _positive(option: str, value: int | None) -> None:
    if value is not None and value < 1:
        fail(f"{option}: must be a positive project id, got {value}")


def _ls_or_exit(settings: Settings, what: str) -> tuple[str, str]:
    if not (settings.label_studio_url and settings.label_studio_api_key):
        fail(f"{what} needs Label Studio: pass --ls-url and --ls-token (or set "
             "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)")
    return settings.label_studio_url, settings.label_studio_api_key.get_secret_value()


def doctor(label_config: Optional[Path] = typer.Option(
               None, "--label-config", help="Label Studio label config XML (default: "
               "LABELBRIDGE_LABEL_CONFIG, else the --ls-project's config from Label Studio)"),
           ontology: Optional[Path] = typer.Option(
               None, "--ontology", help="Labelbox ontology JSON, as project.ontology().normalized "
               "(default: LABELBRIDGE_ONTOLOGY, else from Labelbox with LABELBOX_API_KEY)"),
           mapping: Optional[Path] = typer.Option(None, "--mapping", help="Mapping YAML "
                                                  "(default: LABELBRIDGE_MAPPING)"),
           ls_url: Optional[str] = ls_url_option(),
           ls_token: Optional[str] = ls_token_option(),
           ls_project: Optional[int] = ls_project_option(
               "Read the label config of this Label Studio project"),
           as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON on "
                                        "stdout"),
           timeout: float = typer.Option(30.0, help="Seconds to wait for Label Studio and "
                                         "Labelbox")) -> None:
    """Check that the label config (+ mapping) and the Labelbox ontology map, both ways.

    Exit 0 when everything maps (warnings, declared losses, alone still exit 0).

    Exit 1 when something does not map, or Label Studio or Labelbox cannot be read.

    Exit 2 on bad usage or settings, also when a label config or ontology is not configured.
    """
    import json

    from labelbridge.tools.doctor import run_checks

    for path, option in ((label_config, "--label-config"), (ontology, "--ontology"),
                         (mapping, "--mapping")):
        if path is not None and not path.is_file():
            fail(f"{option} {path}: no such file")
    _positive("--ls-project", ls_project)
    if timeout <= 0:
        fail(f"--timeout: must be positive, got {timeout:g}")
    settings = ls_settings(ls_url, ls_token, None)
    setup_logging(settings.log_level)
    # the SDK logs a network failure as an error before raising it; the finding says it already
    logging.getLogger("lbox.request_client").setLevel(logging.CRITICAL)
    report = run_checks(settings, label_config, ontology, mapping, ls_project, timeout=timeout)
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    human = err if as_json else out   # with --json, stdout holds the JSON alone
    for name, where in report.sources.items():
        human.print(f"{name.replace('_', ' ')}: {escape(str(where))}", highlight=False,
                    soft_wrap=True)
    if report.findings:
        table = Table(title="labelbridge doctor", show_lines=False)
        for col in ("severity", "code", "message"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            style = "red" if f.severity == "error" else "yellow"
            table.add_row(f"[{style}]{f.severity}[/]", f.code, escape(f.message))
        human.print(table)
    if report.ok:
        note = f" ({len(report.warnings)} warnings)" if report.warnings else ""
        human.print(f"[green]ok:[/] everything maps{note}", highlight=False)
        raise typer.Exit(0)
    human.print(f"[bold red]{len(report.errors)} errors[/], {len(report.warnings)} warnings",
                highlight=False)
    unconfigured = any(f.code == "not-configured" for f in report.errors)
    raise typer.Exit(2 if unconfigured else 1)


def reconcile(ls_url: Optional[str] = ls_url_option(),
              ls_token: Optional[str] = ls_token_option(),
              ls_project: Optional[int] = ls_project_option(
                  "Label Studio project id (default: LABEL_STUDIO_PROJECT_ID, else every "
                  "project the outbox has seen)"),
              full: bool = typer.Option(False, help="Ignore the cursor: re-read every task"),
              deliver_now: bool = typer.Option(False, "--deliver", help="Deliver afterwards")
              ) -> None:
    """Queue the annotation changes Label Studio has and the outbox has not seen.

    Exit 1 when Label Studio refused or is unreachable; 2 on bad usage or settings.
    """
    from labelbridge.groundtruth.outbox import Outbox
    from labelbridge.labelstudio.api import LabelStudioUnavailable
    from labelbridge.service.runtime import make_reconciler

    _positive("--ls-project", ls_project)
    settings = ls_settings(ls_url, ls_token, ls_project)
    setup_logging(settings.log_level)
    _ls_or_exit(settings, "reconcile")
    outbox = Outbox(settings.outbox_location)
    reconciler = make_reconciler(settings, outbox)  # not None: _ls_or_exit checked
    projects = reconciler.projects(settings.label_studio_project_id)  # type: ignore[union-attr]
    if not projects:
        fail("no project to reconcile: pass --ls-project ID (or set LABEL_STUDIO_PROJECT_ID)")
    try:
        for pid in projects:
            r = reconciler.run(pid, full=full)  # type: ignore[union-attr]
            out.print(f"project {pid}: {r.tasks_read} tasks read; queued {r.upserts} "
                      f"annotation(s) and {r.deletes} deletion(s); {r.duplicates} already known",
                      highlight=False)
    except LabelStudioUnavailable as exc:
        fail(str(exc), 1)
    outbox.close()
    if deliver_now:
        from labelbridge.service.cli.run import deliver
        deliver(once=True)


def connect(ls_url: Optional[str] = ls_url_option(),
            ls_token: Optional[str] = ls_token_option(),
            ls_project: Optional[int] = ls_project_option(),
            all_projects: bool = typer.Option(
                False, "--all-projects", help="Every project already wired to this bridge (an "
                "ML backend at --backend-url or a webhook to it): puts the current webhook "
                "header on each, e.g. after setting LABELBRIDGE_WEBHOOK_TOKEN"),
            backend_url: Optional[str] = typer.Option(None, help="URL Label Studio reaches the "
                                                      "bridge at (default: from "
                                                      "LABELBRIDGE_HOST/PORT)"),
            interactive: bool = typer.Option(
                False, "--interactive", help="Register the backend as interactive (Label "
                "Studio then offers Auto-Annotation; the bridge answers it with the stored "
                "predictions and ignores what was drawn)")) -> None:
    """Wire a Label Studio project to the bridge: ML backend, webhook header, mapping check.

    Exit 1 when Label Studio refused or is unreachable, or names do not map.

    Exit 2 on bad usage or settings.
    """
    from labelbridge.labelstudio.api import LabelStudioApi, LabelStudioUnavailable
    from labelbridge.tools.connect import is_connected

    _positive("--ls-project", ls_project)
    if all_projects and ls_project is not None:
        fail("pass --ls-project ID or --all-projects, not both")
    settings = ls_settings(ls_url, ls_token, None if all_projects else ls_project)
    setup_logging(settings.log_level)
    url, token = _ls_or_exit(settings, "connect")
    if not all_projects and settings.label_studio_project_id is None:
        fail("which project? pass --ls-project ID (or set LABEL_STUDIO_PROJECT_ID), or "
             "--all-projects")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    backend = backend_url or f"http://{host}:{settings.port}"
    failed = False
    try:
        api = LabelStudioApi(url, token)
        if all_projects:
            projects = [int(p["id"]) for p in api.projects()]
            wired = [pid for pid in projects if is_connected(api, pid, backend)]
            for pid in sorted(set(projects) - set(wired)):
                out.print(f"project {pid}: not connected to {backend}, left alone")
        else:
            wired = [int(settings.label_studio_project_id)]  # type: ignore[arg-type]
        for pid in wired:
            failed |= _connect_one(api, pid, backend, settings, interactive, len(wired) > 1)
    except LabelStudioUnavailable as exc:
        fail(str(exc), 1)
    if not settings.webhook_token:
        err.print("[yellow]warning:[/] LABELBRIDGE_WEBHOOK_TOKEN is not set: the webhook has no "
                  "shared secret")
    if all_projects and not wired:
        out.print(f"no project is connected to {backend}: connect one with --ls-project ID")
    if failed:
        raise typer.Exit(1)


def _connect_one(api, project_id: int, backend_url: str, settings: Settings, interactive: bool,
                 name_project: bool) -> bool:
    """Wire one project and check its names; True when names cannot be mapped."""
    from labelbridge.tools import doctor
    from labelbridge.tools.connect import connect as wire

    result = wire(api, project_id, backend_url, settings, interactive)
    prefix = f"project {project_id}: " if name_project else ""
    for change in result.changes or ["already connected: nothing changed"]:
        out.print(prefix + change, highlight=False)
    report = doctor.run_checks(settings, ls_project=project_id)
    errors = [f for f in report.errors if f.code != "not-configured"]
    if any(f.code == "not-configured" for f in report.errors):
        err.print(f"{prefix}note: no Labelbox ontology configured (LABELBRIDGE_ONTOLOGY, or "
                  "LABELBOX_API_KEY + LABELBOX_PROJECT_ID): names were not checked")
    for finding in errors + report.warnings:
        colour = "yellow" if finding.severity == "warning" else "red"
        err.print(f"{prefix}[{colour}]{finding.severity}:[/] {escape(finding.message)}",
                  highlight=False)
    if errors:
        err.print(f"{prefix}connected, but these names cannot be mapped (see `labelbridge "
                  "doctor`)")
    return bool(errors)
