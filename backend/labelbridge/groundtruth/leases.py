"""Keeps a worker's batches leased while it delivers them (a long import must not look
abandoned), in a thread of its own: every third of a lease each held batch is renewed."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from labelbridge.groundtruth.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, outbox: Outbox, owner: str, lease_s: float) -> None:
        self.outbox = outbox
        self.owner = owner
        self.lease_s = lease_s
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, batch_id: int) -> Iterator[None]:
        with self._lock:
            self._held.add(batch_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew, name="delivery-leases",
                                                daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(batch_id)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                held = sorted(self._held)
            for batch_id in held:
                try:
                    if not self.outbox.renew_lease(batch_id, self.owner, self.lease_s):
                        log.warning("batch %d: lease lost (closed, or taken over)", batch_id)
                except OutboxError as exc:   # the batch is recovered if its lease runs out
                    log.warning("batch %d: lease not renewed: %s", batch_id, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
