"""What every command shares: settings, logging, errors, progress and report tables.

Exit codes: 0 ok; 1 the work failed (something does not map, Label Studio or Labelbox refused);
2 bad usage or settings. A command's result goes to stdout (``out``); logs, progress, notes,
warnings and errors go to stderr (``err``). Commands that talk to Label Studio take the same
``--ls-url/--ls-token/--ls-project`` options (``ls_url_option`` ...), each falling back to its
environment variable through the settings."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, NoReturn

import orjson

import typer
from rich.console import Console
from rich.progress import (BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text
from rich.table import Table

from labelbridge.labelstudio.mapping import Mapping, MappingError, Overrides
from labelbridge.model.report import ConversionReport, Loss
from labelbridge.settings import Settings, SettingsError, load_settings

out = Console(soft_wrap=True)          # results: long paths and URLs are never split by rich
err = Console(stderr=True)

# Libraries whose INFO lines are chatter to a user ("HTTP Request: GET ... 404 Not Found" at
# the end of every paging): shown only with LOG_LEVEL=DEBUG.
QUIET_LOGGERS = ("httpx", "httpcore", "urllib3", "label_studio_sdk", "lbox", "labelbox")


def ls_url_option():
    return typer.Option(None, "--ls-url", show_default=False,
                        help="Label Studio URL, e.g. http://127.0.0.1:8080 (default: "
                        "LABEL_STUDIO_URL)")


def ls_token_option():
    return typer.Option(None, "--ls-token", show_default=False,
                        help="Label Studio API token, legacy token or personal access token "
                        "(default: LABEL_STUDIO_API_KEY)")


def ls_project_option(what: str = "Label Studio project id"):
    return typer.Option(None, "--ls-project", show_default=False,
                        help=f"{what} (default: LABEL_STUDIO_PROJECT_ID)")


def ls_settings(ls_url: str | None, ls_token: str | None, ls_project: int | None) -> Settings:
    """The settings, with the Label Studio options given on the command line in front."""
    return settings_or_exit(LABEL_STUDIO_URL=ls_url, LABEL_STUDIO_API_KEY=ls_token,
                            LABEL_STUDIO_PROJECT_ID=ls_project)


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings_or_exit(**overrides) -> Settings:
    """The settings; an override that is None leaves the environment's value."""
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        fail(str(exc))
        raise  # unreachable


def setup_logging(level: str, settings: Settings | None = None) -> None:
    """Logs to stderr at ``level`` (``service.logs``; with ``settings``: in ``LOG_FORMAT``, the
    secret settings redacted); the libraries in QUIET_LOGGERS at WARNING unless DEBUG."""
    from labelbridge.service import logs

    level = level.upper() if level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO"
    if settings is None:
        logs.configure(level)
    else:
        logs.configure(level, settings.log_format, logs.secret_values(settings))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)


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


def print_report(report: ConversionReport, title: str, report_file: Path | None = None,
                 console: Console = out) -> None:
    """The summary table: one row per kind, reasons aggregated (every occurrence, with its row
    and field, is in ``report_file`` when given)."""
    if report.skipped:
        title += f" ({report.lost:,} not converted: " + (
            f"each listed in {report_file})" if report_file else "use --report FILE to list "
            "each with its row and field)")
    table = Table(title=title, show_lines=False)
    for col in ("kind", "converted", "skipped", "why skipped"):
        table.add_column(col)
    for kind, ok, skipped, reasons in report.rows():
        table.add_row(kind, str(ok), str(skipped), reasons)
    console.print(table)


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


@contextmanager
def atomic_output(path: Path | None) -> Iterator[IO[bytes]]:
    """Standard output, or a temporary file beside ``path`` that replaces it only when the block
    succeeds (a failed run leaves no half-written file, and an older ``path`` untouched)."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def loss_report(path: Path | None) -> Iterator[Callable[[Loss], None] | None]:
    """A sink writing every loss as one JSON line to ``path`` (atomically, like the output)."""
    if path is None:
        yield None
        return
    with atomic_output(path) as fh:
        yield lambda loss: fh.write(orjson.dumps(loss.as_dict()) + b"\n")


def output_error(exc: OSError) -> None:
    fail(f"{exc.filename or 'output'}: {exc.strerror or exc}", 1)
