"""``labelbridge serve``: the app under uvicorn, with its limits, and a bounded graceful stop.

uvicorn options where they exist: ``timeout_keep_alive`` (idle kept-alive connections),
``timeout_graceful_shutdown`` (requests in flight at SIGTERM), ``h11_max_incomplete_event_size``
(should the h11 parser be used); the rest is ``service.protocol`` (head size and time, the
connection cap) and ``service.limits`` (body size and time).

SIGTERM (or Ctrl-C): the listening socket closes, idle connections close, requests in flight
are answered (for up to ``LABELBRIDGE_SHUTDOWN_TIMEOUT`` s) while the delivery worker is told at
once to finish its current step (it gets the same time; an import it leaves running is resumed
by name at the next start). The process exits within about ``LABELBRIDGE_SHUTDOWN_TIMEOUT`` + 1 s.
"""

from __future__ import annotations

import os
import tempfile
from types import FrameType
from typing import Callable

import uvicorn

from labelbridge.service.protocol import ConnectionLimits, bounded_protocol
from labelbridge.settings import Settings


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._on_exit()


def data_dir_problem(settings: Settings) -> str | None:
    """Why the data dir cannot hold the outbox and the index, naming the path and the setting."""
    where = f"LABELBRIDGE_DATA_DIR={settings.data_dir}"
    fix = ("the outbox and the prediction index live there: make it writable (Docker: "
           "chown -R 10001:10001 the volume) or set LABELBRIDGE_DATA_DIR to a writable directory")
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{where}: cannot create the directory ({exc.strerror}); {fix}"
    if not settings.data_dir.is_dir():
        return f"{where}: not a directory; {fix}"
    try:
        with tempfile.TemporaryFile(dir=settings.data_dir):
            pass
    except OSError as exc:
        return f"{where}: not writable ({exc.strerror}); {fix}"
    for path in (settings.outbox_db, settings.predictions_db):
        for f in (path, path.with_name(path.name + "-wal")):
            if f.exists() and not os.access(f, os.R_OK | os.W_OK):
                return f"{where}: {f} is not writable; {fix}"
    return None


def run(settings: Settings) -> None:
    from labelbridge.service.server import create_app

    app = create_app(settings)
    refused = app.state.metrics.refused
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False,
        log_level=settings.log_level.lower(), lifespan="on", ws="none", server_header=False,
        http=bounded_protocol(ConnectionLimits.from_settings(settings),
                              lambda reason: refused.labels(reason).inc()),
        timeout_keep_alive=settings.keepalive_timeout,
        timeout_graceful_shutdown=settings.shutdown_timeout,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=int(settings.max_header_size))
    _Server(config, app.state.runtime.begin_stop).run()
