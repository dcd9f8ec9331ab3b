"""``labelbridge convert``: bulk conversions between the two formats."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from labelbridge.labelbox.export import ExportError, Selection
from labelbridge.model.report import ConversionReport
from labelbridge.service.cli import common
from labelbridge.service.cli.common import fail, load_mapping, print_report

app = typer.Typer(no_args_is_help=True, help="Bulk conversions between the two formats.")


@app.command("lb2ls")
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
    # the tasks on stdout leave the summary to stderr
    print_report(report, f"Labelbox -> Label Studio: {count} tasks",
                 common.out if out else common.err)


@app.command("ls2lb")
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
    print_report(report, f"Label Studio -> Labelbox: {lines} NDJSON lines",
                 common.out if out else common.err)
