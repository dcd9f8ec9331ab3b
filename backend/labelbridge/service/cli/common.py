"""What every command shares: settings, logging, errors, progress and report tables.

Exit codes: 0 ok; 1 the work failed (something does not map, Label Studio or Labelbox refused);
2 bad usage or settings."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from labelbridge.labelstudio.mapping import Mapping, MappingError, Overrides
from labelbridge.model.report import ConversionReport
from labelbridge.settings import Settings, SettingsError, load_settings

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


def setup_logging(level: str, settings: Settings | None = None) -> None:
    """Logs to stderr; with ``settings``: in ``LOG_FORMAT``, the secret settings redacted
    (``service.logs``)."""
    from labelbridge.service import logs

    if settings is None:
        logs.configure(level)
    else:
        logs.configure(level, settings.log_format, logs.secret_values(settings))


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
