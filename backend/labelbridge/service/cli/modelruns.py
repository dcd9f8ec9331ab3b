"""Commands around the served model run: refresh-predictions (Label Studio catches up with a
newer run) and report (how annotators changed the predictions)."""

from __future__ import annotations

import csv
import enum
import hashlib
import sys
from typing import Optional

import orjson
import typer
from rich.console import Console
from rich.table import Table

from labelbridge.service.cli.common import (err, fail, ls_settings, ls_token_option, ls_url_option,
                                            out, row_progress, settings_or_exit, setup_logging)


def refresh_predictions(
        project: Optional[int] = typer.Option(
            None, "--ls-project", "--project", min=1, show_default=False,
            help="Label Studio project id (default: LABEL_STUDIO_PROJECT_ID)"),
        ls_url: Optional[str] = ls_url_option(),
        ls_token: Optional[str] = ls_token_option(),
        include_annotated: bool = typer.Option(
            False, "--include-annotated", help="Also replace the predictions of tasks that "
            "have annotations (the annotations themselves are never touched)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would change; "
                                     "change nothing"),
        page_size: int = typer.Option(100, min=1, max=1000, help="Tasks per page")) -> None:
    """Give every task without annotations exactly one prediction: the served version's.

    Sets the project's model version to the served one, removes predictions of other versions
    this bridge served, writes the current ones. Resumable: run it again after an
    interruption. Exit 1 when Label Studio fails, 2 on bad usage or settings.
    """
    from labelbridge.labelstudio.api import LabelStudioApi, LabelStudioUnavailable
    from labelbridge.labelstudio.mapping import MappingError, Overrides
    from labelbridge.predictions import versions
    from labelbridge.predictions.live import EMPTY_MODEL_VERSION
    from labelbridge.predictions.ls_refresh import PredictionRefresher
    from labelbridge.predictions.predictor import Predictor
    from labelbridge.service.runtime import index_store

    settings = ls_settings(ls_url, ls_token, project)
    setup_logging(settings.log_level)
    if not (settings.label_studio_url and settings.label_studio_api_key):
        fail("refresh-predictions needs Label Studio: pass --ls-url and --ls-token (or set "
             "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)")
    project = settings.label_studio_project_id
    if project is None:
        fail("refresh-predictions needs a project: pass --ls-project ID (or set "
             "LABEL_STUDIO_PROJECT_ID)")
    store = index_store(settings, pinned=True)
    if store is None:
        where = "LABELBRIDGE_DATABASE_URL" if settings.shared_database else \
            settings.predictions_db
        fail(f"no prediction index at {where}: run `labelbridge index` "
             "(or `labelbridge serve`) first")
        return
    version = settings.model_version or store.meta().get("model_version") or EMPTY_MODEL_VERSION
    try:
        predictor = Predictor(store, Overrides.load(settings.mapping), version,
                              settings.match_keys)
        api = LabelStudioApi(settings.label_studio_url,
                             settings.label_studio_api_key.get_secret_value())
        key = hashlib.sha1(version.encode()).hexdigest()[:12]
        refresher = PredictionRefresher(
            api, predictor, project, versions.known(settings.data_dir),
            settings.data_dir / f"refresh-{project}-{key}.cursor",
            include_annotated=include_annotated, dry_run=dry_run, page_size=page_size)
        with row_progress(f"project {project} -> {version}") as bar:
            bar.total(api.project(project).get("task_number"))
            summary = refresher.run(bar.update)
    except (LabelStudioUnavailable, MappingError) as exc:
        fail(str(exc), 1)
        return
    finally:
        store.close()
    verb = "would" if dry_run else "did"
    if summary.version_not_set:
        err.print(f"[yellow]warning:[/] the project's model version stays "
                  f"{summary.project_version!r}: {summary.version_not_set}")
    elif summary.project_version != version:
        out.print(f"{verb} set the project's model version: {summary.project_version!r} "
                  f"-> {version!r}", highlight=False)
    for line in summary.changes:
        out.print(f"  {line}", highlight=False)
    resumed = f" (resumed after task {summary.resumed_after})" if summary.resumed_after else ""
    out.print(f"{summary.tasks:,} tasks{resumed}: {verb} remove {summary.removed:,} and write "
              f"{summary.written:,} predictions; {summary.up_to_date:,} up to date, "
              f"{summary.annotated:,} with annotations left alone, "
              f"{summary.without_prediction:,} without a prediction in {version}",
              highlight=False)


class Format(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"


COLUMNS = ("label", "predicted", "accepted", "moved", "relabelled", "attributes_changed",
           "deleted", "added", "acceptance_rate", "mean_iou_moved")


def report(model_version: Optional[str] = typer.Option(
               None, "--model-version", help="Only annotations made from this version"),
           fmt: Format = typer.Option(Format.table, "--format", help="table, csv or json")
           ) -> None:
    """How annotators changed the predictions: per label, the acceptance rate, the mean IoU of
    moved regions, and the count of each outcome (accepted, moved, relabelled, attributes
    changed, deleted, added by hand)."""
    from labelbridge.groundtruth.edit_report import EditStore

    settings = settings_or_exit()
    if not settings.edits_db.exists():
        fail(f"no edit report at {settings.edits_db}: no annotation made from a prediction "
             "has been delivered yet", 1)
    store = EditStore(settings.edits_db)
    try:
        summary = store.summary(model_version)
        known = store.versions()
    finally:
        store.close()
    if model_version and model_version not in known:
        fail(f"--model-version: no annotation was made from {model_version!r} "
             f"(known: {', '.join(known) or 'none'})")
    rows = [f.as_dict() for f in summary.labels] + ([summary.total.as_dict()]
                                                    if summary.total else [])
    if fmt is Format.json:
        sys.stdout.write(orjson.dumps({"model_version": model_version,
                                       "annotations": summary.annotations,
                                       "labels": rows[:-1], "total": rows[-1]},
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt is Format.csv:
        writer = csv.DictWriter(sys.stdout, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table(title=f"edits of {model_version or 'every model version'} "
                            f"({summary.annotations} annotations)")
        for col in COLUMNS:
            table.add_column(col.replace("_", " "), justify="left" if col == "label" else "right",
                             no_wrap=col == "label")
        for row in rows:
            table.add_row(*(_cell(row[c]) for c in COLUMNS))
        Console(width=max(out.width, 130)).print(table)  # every column whole, also in a pipe


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
