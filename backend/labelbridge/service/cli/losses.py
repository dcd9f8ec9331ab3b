"""``labelbridge losses``: every loss of the prepared predictions, one JSON line each."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import orjson
import typer

from labelbridge.service.cli.common import (atomic_output, err, fail, output_error,
                                            settings_or_exit)


def losses(context: Optional[str] = typer.Option(
               None, help="Only this conversion context (a prefix of its key, as /metrics "
               "shows it under prepared[].context)"),
           out: Optional[Path] = typer.Option(None, help="Write to this file, atomically "
                                              "(default: stdout)")) -> None:
    """List every loss of the prepared predictions, one JSON line each.

    Each line names the context, data row, feature, region id, field and reason. Exit codes:
    0 listed; 1 no prediction index; 2 bad usage or settings (or no context matches).
    """
    from labelbridge.service.runtime import index_store

    settings = settings_or_exit()
    store = index_store(settings)
    if store is None:
        where = "LABELBRIDGE_DATABASE_URL" if settings.shared_database else \
            settings.predictions_db
        fail(f"no prediction index at {where} (run `labelbridge index`)", 1)
        return
    keys = [c["context"] for c in store.contexts()
            if context is None or c["context"].startswith(context)]
    if context is not None and not keys:
        fail(f"--context {context}: no such conversion context")
    count = 0
    try:
        with atomic_output(out) as fh:
            for key in keys:
                for blob in store.iter_losses(key):
                    for line in blob.splitlines():
                        fh.write(orjson.dumps({"context": key[:12], **orjson.loads(line)})
                                 + b"\n")
                        count += 1
    except OSError as exc:
        output_error(exc)
    finally:
        store.close()
    err.print(f"{count:,} losses in {len(keys)} conversion context(s)")
