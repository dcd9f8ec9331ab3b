"""``labelbridge convert``: bulk conversions between the two formats.

Exit codes: 0 converted (what could not be is in the summary and, with ``--report``, listed one
JSON line per occurrence); 1 the work failed (an input could not be read as a whole, e.g. a line
that is not JSON, or the output could not be written: nothing is written then); 2 bad usage
(options, missing files, an unusable label config or mapping).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelbridge.labelbox.export import ExportError, Selection
from labelbridge.model.report import ConversionReport
from labelbridge.service.cli import common
from labelbridge.service.cli.common import (atomic_output, fail, load_mapping, loss_report,
                                            output_error, print_report,
                                            settings_or_exit)

app = typer.Typer(no_args_is_help=True, help="Bulk conversions between the two formats. "
                  "Exit codes: 0 converted (losses are listed, not fatal); 1 an input could not "
                  "be read or the output not written (nothing is written); 2 bad usage.")
REPORT_HELP = ("Write every loss as one JSON line (data row / task, annotation, feature, "
               "region id, field, reason) to this file")


@app.command("lb2ls")
def lb2ls(export: Path = typer.Option(..., help="Labelbox export-v2 file, folder or .gz"),
          label_config: Path = typer.Option(..., help="Label Studio label config XML"),
          mapping: Optional[Path] = typer.Option(None, help="Mapping YAML (overrides names)"),
          out: Optional[Path] = typer.Option(None, help="Output JSON file, written atomically "
                                             "(default: stdout)"),
          report: Optional[Path] = typer.Option(None, help=REPORT_HELP),
          source: str = typer.Option("predictions", help="predictions | run_labels | "
                                     "project_labels"),
          model_run: Optional[str] = typer.Option(None, help="Model run id (when several)"),
          project: Optional[str] = typer.Option(None, help="Labelbox project id (project_labels)"),
          ) -> None:
    """Labelbox export -> Label Studio tasks with predictions, ready to import.

    Exit codes: 0 converted (what could not be is summarised, and listed by --report); 1 an
    input could not be read as a whole or the output not written (nothing is written); 2 bad
    usage (options, missing files, unusable label config or mapping).
    """
    from labelbridge.service.runtime import mask_source
    from labelbridge.tools.convert import ConvertError, lb_to_ls

    if source not in ("predictions", "run_labels", "project_labels"):
        fail(f"--source: must be predictions, run_labels or project_labels, got {source!r}")
    if not export.exists():
        fail(f"--export {export}: no such file or directory")
    m = load_mapping(label_config, mapping)
    masks = mask_source(settings_or_exit())  # mask PNGs: with LABELBOX_API_KEY when set
    summary = ConversionReport()
    try:
        with loss_report(report) as sink, atomic_output(out) as sink_out:
            summary.sink = sink
            count = lb_to_ls(export, m, Selection(source, model_run, project),  # type: ignore[arg-type]
                             sink_out, summary, masks=masks)
    except ConvertError as exc:
        fail(str(exc))
        return
    except ExportError as exc:
        fail(f"{exc} (nothing written)", 1)
        return
    except OSError as exc:
        output_error(exc)
        return
    # the tasks on stdout leave the summary to stderr
    print_report(summary, f"Labelbox -> Label Studio: {count} tasks", report,
                 common.out if out else common.err)


@app.command("ls2lb")
def ls2lb(tasks: Path = typer.Option(..., help="Label Studio JSON export (list of tasks)"),
          label_config: Path = typer.Option(..., help="Label Studio label config XML"),
          mapping: Optional[Path] = typer.Option(None, help="Mapping YAML (overrides names)"),
          ontology: Optional[Path] = typer.Option(
              None, help="Labelbox ontology JSON: name features by their schemaId and exact "
              "spelling (default: LABELBRIDGE_ONTOLOGY)"),
          out: Optional[Path] = typer.Option(None, help="Output NDJSON file, written "
                                             "atomically (default: stdout)"),
          report: Optional[Path] = typer.Option(None, help=REPORT_HELP),
          kind: str = typer.Option("ground_truth", help="ground_truth | mal (relationships "
                                   "only with mal)")) -> None:
    """Label Studio JSON export -> Labelbox NDJSON (one line per annotation).

    Exit codes: 0 converted (what could not be is summarised, and listed by --report); 1 an
    input could not be read as a whole or the output not written (nothing is written); 2 bad
    usage (options, missing files, unusable label config or mapping).
    """
    from labelbridge.labelbox.features import ontology_features
    from labelbridge.labelbox.ontology import OntologyError
    from labelbridge.tools.convert import ConvertError, ls_to_lb

    if kind not in ("ground_truth", "mal"):
        fail(f"--kind: must be ground_truth or mal, got {kind!r}")
    if not tasks.is_file():
        fail(f"--tasks {tasks}: no such file")
    try:
        features = ontology_features(ontology)
    except OntologyError as exc:
        fail(f"--ontology: {exc}")
        return
    m = load_mapping(label_config, mapping, features.names())
    summary = ConversionReport()
    try:
        with loss_report(report) as sink, atomic_output(out) as sink_out:
            summary.sink = sink
            lines = ls_to_lb(tasks, m, sink_out, summary, include_relations=kind == "mal",
                             features=features)
    except ConvertError as exc:
        fail(f"{exc} (nothing written)", 1)
        return
    except OSError as exc:
        output_error(exc)
        return
    print_report(summary, f"Label Studio -> Labelbox: {lines} NDJSON lines", report,
                 common.out if out else common.err)
