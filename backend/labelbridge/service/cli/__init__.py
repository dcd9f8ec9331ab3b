"""The ``labelbridge`` command: one Typer app, its commands registered here by name.

Exit codes (every command): 0 ok; 1 the work failed (something does not map, Label Studio or
Labelbox refused or is unreachable); 2 bad usage or settings.
"""

from __future__ import annotations

import os

import typer

from labelbridge.service.cli import convert, labelstudio, losses, modelruns, outbox, run
from labelbridge.service.cli.common import setup_logging

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Bridge between Labelbox and Label Studio.")


@app.callback()
def _every_command() -> None:
    # logs to stderr, libraries quiet, before any command (a command may redo it with the
    # validated LOG_LEVEL)
    setup_logging(os.environ.get("LOG_LEVEL") or "INFO")


app.command()(run.serve)
app.command()(run.index)
app.add_typer(convert.app, name="convert")
app.command()(losses.losses)
app.command()(labelstudio.doctor)
app.add_typer(outbox.app, name="outbox")
app.command()(run.deliver)
app.command()(labelstudio.reconcile)
app.command()(labelstudio.connect)
app.command()(run.healthcheck)
app.command()(modelruns.refresh_predictions)
app.command()(modelruns.report)
