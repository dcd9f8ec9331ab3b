"""Readiness: can the service do its job right now, and if not, why (``GET /ready``).

``/health`` stays what Label Studio needs (fast, always UP while the process serves). Readiness
is for operators and the Docker health check; it is *degraded*, naming each reason, when

* the outbox cannot take events: its file is gone, the data dir is not writable or nearly
  full, or the outbox itself reports an error;
* delivery is stuck: the oldest pending item waited longer than
  ``LABELBRIDGE_READY_MAX_PENDING_AGE``, or the delivery worker process is not running;
* the dead-letter queue grows: more than ``LABELBRIDGE_READY_MAX_NEW_DEAD_LETTERS`` new dead
  letters within ``LABELBRIDGE_READY_DEAD_LETTER_WINDOW`` seconds.

Checks touch the disk: call ``check`` off the event loop.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import deque
from typing import Any

from labelbridge.settings import Settings

MIN_FREE_BYTES = 64 << 20
SAMPLE_EVERY_S = 5.0


class Readiness:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._dead: deque[tuple[float, int]] = deque(maxlen=4096)   # (time, dead letters)
        self._lock = threading.Lock()

    def note_dead_letters(self, n: int, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        with self._lock:
            if not self._dead or t - self._dead[-1][0] >= SAMPLE_EVERY_S or n != self._dead[-1][1]:
                self._dead.append((t, n))

    def new_dead_letters(self, n: int, now: float | None = None) -> int:
        """Dead letters added within the window (against the newest sample at least a window
        old, or the first one)."""
        t = time.monotonic() if now is None else now
        self.note_dead_letters(n, t)
        window = self.settings.ready_dead_letter_window
        with self._lock:
            while len(self._dead) > 1 and self._dead[1][0] <= t - window:
                self._dead.popleft()
            return max(0, n - self._dead[0][1])

    def check(self, snapshot: dict[str, Any], now: float | None = None) -> list[str]:
        """Every reason the service is degraded (empty: ready)."""
        s = self.settings
        reasons = self._storage()
        outbox = snapshot.get("outbox")
        if outbox is None:
            reasons.append(f"outbox unavailable: {snapshot.get('outbox_error') or 'no answer'}")
        else:
            age = outbox.get("oldest_pending_age_s") or 0.0
            if age > s.ready_max_pending_age:
                reasons.append(f"delivery stuck: the oldest pending item has waited {age:.0f} s "
                               "(over LABELBRIDGE_READY_MAX_PENDING_AGE="
                               f"{s.ready_max_pending_age:g})")
            grown = self.new_dead_letters(outbox.get("dead_letters") or 0, now)
            if grown > s.ready_max_new_dead_letters:
                reasons.append(f"dead-letter queue grows: {grown} new within "
                               f"{s.ready_dead_letter_window:g} s (labelbridge outbox dead)")
        worker = snapshot.get("delivery_worker") or {}
        if worker.get("mode") == "process" and not worker.get("alive"):
            reasons.append(f"delivery stuck: the delivery worker process is not running "
                           f"({worker.get('restarts', 0)} restarts)")
        return reasons

    def _storage(self) -> list[str]:
        s = self.settings
        if s.shared_database:
            return []   # the outbox is in PostgreSQL: its health and status say whether it works
        if not s.outbox_db.exists():
            return [f"outbox unwritable: {s.outbox_db} is missing (LABELBRIDGE_DATA_DIR="
                    f"{s.data_dir})"]
        probe = s.data_dir / f".ready-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return [f"outbox unwritable: cannot write in {s.data_dir} ({exc.strerror}; "
                    "LABELBRIDGE_DATA_DIR)"]
        free = shutil.disk_usage(s.data_dir).free
        if free < MIN_FREE_BYTES:
            return [f"outbox unwritable soon: {free >> 20} MiB free in {s.data_dir}"]
        return []
