"""Logging for every process of the service: text or JSON lines, request context, no secrets,
repeated warnings aggregated.

* ``LOG_FORMAT=json``: one object per line, ``{"ts", "level", "logger", "msg", ...}`` plus the
  request context (``request_id``, and the Label Studio ``project``/``task``/``annotation`` ids
  the route learned) and ``exc`` for a traceback.
* Secrets: the values of the secret settings are replaced by ``<redacted>`` in every line, text
  or JSON, whoever logged it (a last line of defence: nothing should log them at all).
* Aggregation: a WARNING (or worse) that repeats the same message, ids aside, within
  ``AGGREGATE_WINDOW_S`` is logged once; the next one after the window says how many were held
  back, and so does shutdown.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson

REDACTED = "<redacted>"
AGGREGATE_WINDOW_S = 60.0
_MAX_KEYS = 1000
# Tokens with a digit (ids, data rows, keys) do not make two messages different.
_VARIABLE = re.compile(r"[\w.:/-]*\d[\w.:/-]*")

context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("labelbridge_log",
                                                                         default={})


def bind(**fields: Any) -> None:
    """Add fields (e.g. ``project=3``) to the context of the current request's log lines."""
    context.set({**context.get(), **{k: v for k, v in fields.items() if v is not None}})


class Redactor(logging.Filter):
    """Replaces the given secret values in the formatted message and arguments."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            clean = self.scrub(message)
            if clean != message or record.args:
                record.msg, record.args = clean, None
            if record.exc_info and not record.exc_text:
                record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            elif record.exc_text:
                record.exc_text = self.scrub(record.exc_text)
        return True


class Aggregator(logging.Filter):
    """Holds back repeats of the same WARNING+ message within a window, then counts them."""

    def __init__(self, window_s: float = AGGREGATE_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self._seen: OrderedDict[tuple, list] = OrderedDict()   # key -> [since, held back, last]
        self._lock = threading.Lock()
        self._emit = None

    def attach(self, handler: logging.Handler) -> None:
        self._emit = handler.handle

    @staticmethod
    def key(record: logging.LogRecord) -> tuple:
        return record.name, record.levelno, _VARIABLE.sub("#", record.getMessage())

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "aggregated", False):
            return True
        key, now = self.key(record), time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window_s:
                seen[1] += 1
                seen[2] = record
                return False
            self._seen[key] = [now, 0, None]
            self._seen.move_to_end(key)
            while len(self._seen) > _MAX_KEYS:
                self._seen.popitem(last=False)
        if seen is not None and seen[1]:
            self._summary(seen[1], seen[2], now - seen[0])
        return True

    def flush(self) -> None:
        with self._lock:
            held = [(v[1], v[2], time.monotonic() - v[0]) for v in self._seen.values() if v[1]]
            self._seen.clear()
        for n, last, age in held:
            self._summary(n, last, age)

    def _summary(self, n: int, last: logging.LogRecord, age: float) -> None:
        if self._emit is None or last is None:
            return
        summary = logging.makeLogRecord({
            "name": last.name, "levelno": last.levelno, "levelname": last.levelname,
            "msg": "%d more like this in the last %.0f s, the last: %s",
            "args": (n, age, last.getMessage()), "aggregated": True, "repeats": n})
        self._emit(summary)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        out.update(getattr(record, "ctx", None) or {})
        if getattr(record, "repeats", None):
            out["repeats"] = record.repeats
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = getattr(record, "ctx", None)
        return line + "".join(f" {k}={v}" for k, v in ctx.items()) if ctx else line


def _with_context(record: logging.LogRecord) -> bool:
    if not hasattr(record, "ctx"):
        record.ctx = context.get()
    return True


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (as ``logging.lastResort``)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


def configure(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = (),
              stream: Any = None) -> Aggregator:
    """Replace the root logger's handlers with one on ``stream`` (stderr); uvicorn's loggers
    propagate to it."""
    handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    aggregator = Aggregator()
    aggregator.attach(handler)
    handler.addFilter(_with_context)
    handler.addFilter(Redactor(secrets))
    handler.addFilter(aggregator)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    global _current
    if _current is None:
        atexit.register(_flush_at_exit)
    _current = (handler, aggregator)
    return aggregator


_current: tuple[logging.Handler, Aggregator] | None = None


def _flush_at_exit() -> None:
    if _current is not None and _current[0] in logging.getLogger().handlers \
            and not getattr(_current[0].stream, "closed", False):
        _current[1].flush()


def secret_values(settings: Any) -> list[str]:
    """The values of every secret setting (``SecretStr``)."""
    from pydantic import SecretStr

    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]
