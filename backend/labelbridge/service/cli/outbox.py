"""``labelbridge outbox``: inspect and requeue the delivery outbox."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.table import Table

from labelbridge.settings import Settings
from labelbridge.service.cli.common import err, fail, settings_or_exit

app = typer.Typer(no_args_is_help=True, help="Inspect and requeue the delivery outbox.")


def open_outbox(settings: Settings):
    from labelbridge.groundtruth.outbox import Outbox

    if not settings.shared_database and not settings.outbox_db.exists():
        fail(f"no outbox at {settings.outbox_db} (LABELBRIDGE_DATA_DIR={settings.data_dir})")
    return Outbox(settings.outbox_location)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


@app.command("status")
def outbox_status(json_out: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """What is pending, in flight, delivered, failed and why."""
    import orjson

    settings = settings_or_exit()
    ob = open_outbox(settings)
    st = ob.status()
    if json_out:
        sys.stdout.write(orjson.dumps(st, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table(title=f"outbox {ob.location}")
    table.add_column("state")
    table.add_column("items", justify="right")
    for state, n in st["counts"].items():
        table.add_row(state, str(n))
    err.print(table)
    err.print(f"oldest pending: {_age(st['oldest_pending_age_s'])}; due now: {st['due']}; "
              f"dead letters: {st['dead_letters']}; rejected bodies: {st['rejected']}; "
              f"sink: {settings.sink}; retention: {settings.retention_days:g} days "
              f"({st['pruned_total']} rows pruned)")
    if st["batches"]:
        # leased: a worker delivers it; waiting: given back until a retry (the import is
        # resumed by name); abandoned: its lease ran out, the next worker takes it over
        claimed = Table(title="claimed batches")
        for col in ("batch", "state", "items", "age", "lease", "attempts", "import", "last error"):
            claimed.add_column(col)
        for b in st["batches"]:
            lease = _age(b["lease_left_s"]) if b["lease_left_s"] > 0 else "ended"
            claimed.add_row(str(b["batch"]), b["state"], str(b["items"]), _age(b["age_s"]),
                            lease, str(b["attempts"]), b["import_name"] or "-",
                            b["last_error"] or "")
        err.print(claimed)
    failed = ob.items("failed", limit=20)
    if failed:
        dead = Table(title="dead letters (newest first)")
        for col in ("item", "annotation", "task", "attempts", "reason"):
            dead.add_column(col)
        for it in failed:
            dead.add_row(str(it["id"]), str(it["annotation_id"]), str(it["task_id"]),
                         str(it["attempts"]), it["last_error"] or "")
        err.print(dead)


@app.command("dead")
def outbox_dead(limit: int = typer.Option(100, help="How many")) -> None:
    """List dead letters with the reason Labelbox (or the conversion) gave."""
    settings = settings_or_exit()
    for it in open_outbox(settings).items("failed", limit=limit):
        typer.echo(f"item {it['id']}\tannotation {it['annotation_id']}\ttask {it['task_id']}\t"
                   f"attempts {it['attempts']}\t{it['last_error']}")


@app.command("retry")
def outbox_retry(item: Optional[list[int]] = typer.Argument(None, help="Item ids (default: all "
                                                             "dead letters)")) -> None:
    """Requeue dead letters (after fixing what made them fail)."""
    settings = settings_or_exit()
    n = open_outbox(settings).requeue(item or None)
    err.print(f"requeued {n} item(s)")


@app.command("rejected")
def outbox_rejected(limit: int = typer.Option(20, help="How many"),
                    show_body: bool = typer.Option(False, "--body", help="Print the bodies")) -> None:
    """Webhook bodies that were refused (4xx), kept for inspection."""
    settings = settings_or_exit()
    for r in open_outbox(settings).rejected(limit):
        typer.echo(f"#{r['id']}\t{r['reason']}\t{r['body_size']} bytes"
                   + (" (truncated)" if r["truncated"] else ""))
        if show_body:
            typer.echo(r["body"].decode("utf-8", "replace"))
