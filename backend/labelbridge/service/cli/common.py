"""What every command shares: settings, logging, errors, progress and report tables.

Exit codes: 0 ok; 1 the work failed (something does not map, Label Studio or Labelbox refused);
2 bad usage or settings."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console
from rich.progress import (BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text
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


class _RowRate(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f} rows/s" if task.speed else "")


class RowProgress:
    """A progress bar of rows: count, rows/s, and the ETA once ``total`` is known."""

    def __init__(self, progress: Progress, task) -> None:
        self._progress, self._task = progress, task

    def update(self, n: int) -> None:
        self._progress.update(self._task, completed=n)

    def total(self, total: int | None) -> None:
        self._progress.update(self._task, total=total)


@contextmanager
def row_progress(description: str, total: int | None = None) -> Iterator[RowProgress]:
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:,} rows"), _RowRate(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=False) as progress:
        yield RowProgress(progress, progress.add_task(description, total=total))


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
