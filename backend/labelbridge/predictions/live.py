"""The index ``/predict`` answers from, and how a newer one replaces it.

Every ``interval`` seconds, and when Label Studio calls ``/setup`` (at most every
``POKE_MIN_INTERVAL`` s), a background thread asks the source what it offers now (a newer run, a
changed export file). When that differs from what is served, it builds the new index beside
the served one and swaps it in at once: ``/predict`` reads the store it opened (pinned to its
file, so the rename under it changes nothing) until the new store and predictor replace it as
one object. A build that fails leaves the served index alone and is tried again later. An
index rebuilt by another process (``labelbridge index``, another replica) is picked up the
same way. Where the index lives is the ``home`` (``homes.py``): a SQLite file, or the database
several replicas share, where one replica builds and every replica swaps within seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

from labelbridge.labelbox.export import ExportError
from labelbridge.model.sink import PermanentError, TransientError
from labelbridge.predictions import versions
from labelbridge.predictions.homes import FileHome, Home
from labelbridge.predictions.predictor import Predictor
from labelbridge.predictions.sources import Source
from labelbridge.predictions.store import IndexMissing, PredictionStore

log = logging.getLogger(__name__)
EMPTY_MODEL_VERSION = "labelbridge-no-export"
POKE_MIN_INTERVAL = 10.0
FAILURES = (TransientError, PermanentError, ExportError, IndexMissing, OSError)


class Served(NamedTuple):
    store: PredictionStore
    predictor: Predictor
    model_version: str
    fingerprint: str | None


class LiveIndex:
    def __init__(self, home: Path | Home, source: Source | None,
                 predictor: Callable[[PredictionStore, str], Predictor],
                 model_version: str | None = None, interval: float = 300.0) -> None:
        """``home``: the index file, or a ``homes.Home``; ``predictor(store, model_version)``
        makes the predictor of a store; ``model_version`` overrides the index's own;
        ``interval`` 0: never look for a newer index."""
        self.home = FileHome(home) if isinstance(home, (str, Path)) else home
        self.source, self.interval = source, interval
        self._make_predictor, self._override = predictor, model_version
        self.served: Served | None = None
        self.on_swap: Callable[[Served], None] | None = None
        self.label_configs: set[str] = set()  # prepared again after a swap
        self._retired: Served | None = None
        self._checking = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_check = 0.0
        self.last_error: str | None = None
        self.swaps = 0

    # ----- serving ------------------------------------------------------------------------
    def open(self, progress=None, on_total=None) -> Served | None:
        """At start: build the index if the source moved on (a failure is logged and the
        index there, if any, is served), then serve what the file holds. An export file that
        cannot be read raises ``ExportError`` (a bad input, not a passing failure)."""
        if self.source is not None:
            try:
                self.home.ensure(self.source, progress, on_total, wait=True)
            except ExportError:
                raise
            except FAILURES as exc:
                self.last_error = str(exc)
                log.warning("could not build the prediction index (%s); %s", exc,
                            "serving the one built before" if self.home.exists() else
                            "no predictions until a later attempt works")
        if self.home.exists():
            self._swap(self._load())
        return self.served

    def _load(self) -> Served:
        store = self.home.open_pinned()
        try:
            meta = store.meta()  # opens the file: this store reads it from now on
        except BaseException:
            store.close()
            raise
        version = self._override or meta.get("model_version") or EMPTY_MODEL_VERSION
        return Served(store, self._make_predictor(store, version), version,
                      meta.get("fingerprint"))

    def _swap(self, new: Served) -> None:
        old, self.served = self.served, new
        versions.remember(self.home.data_dir, new.model_version)
        if self.on_swap is not None:
            self.on_swap(new)
        for config in list(self.label_configs):  # so that /predict stays a lookup
            new.predictor.prepare_in_background(config)
        if old is not None:
            self.swaps += 1
            log.info("now serving model version %s (was %s)", new.model_version,
                     old.model_version)
            if self._retired is not None:  # requests still reading it have long finished
                self._retired.store.close()
            self._retired = old

    # ----- looking for a newer index ------------------------------------------------------
    def check(self, build: bool = True) -> bool:
        """Swap in a newer index if there is one (built first when the source moved on and
        ``build``). True if swapped. One check at a time."""
        if not self._checking.acquire(blocking=False):
            return False
        try:
            if build:
                self._last_check = time.monotonic()
            return self._check(build)
        except FAILURES as exc:
            self.last_error = str(exc)
            log.warning("prediction index not refreshed: %s", exc)
            return False
        finally:
            self._checking.release()

    def _check(self, build: bool = True) -> bool:
        served = self.served
        if self.source is not None and build:
            self.home.ensure(self.source)
        current = self.home.current_id()
        if current is None:
            return False
        if served is not None and current == served.store.inode:
            self.last_error = None
            return False
        self._swap(self._load())
        self.last_error = None
        return True

    def poke(self) -> None:
        """Label Studio called ``/setup``: look soon, in the background, without waiting."""
        if (self.interval <= 0 or self._checking.locked()
                or time.monotonic() - self._last_check < min(POKE_MIN_INTERVAL, self.interval)):
            return
        threading.Thread(target=self.check, daemon=True, name="refresh-predictions").start()

    def start(self) -> None:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._run, daemon=True, name="index-refresh")
            self._thread.start()

    def _run(self) -> None:
        """Every ``interval``: build if the source moved on, and swap; in between, every
        ``home.poll_s``: swap to an index another replica published."""
        poll = min(self.home.poll_s or self.interval, self.interval)
        self._last_check = time.monotonic()
        while not self._stop.wait(poll):
            try:
                self.check(build=time.monotonic() - self._last_check >= self.interval - 0.01)
            except Exception:   # the shared database failed: look again next round
                log.exception("prediction index not refreshed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for served in (self.served, self._retired):
            if served is not None:
                served.store.close()

    def status(self) -> dict:
        return {"model_version": self.served.model_version if self.served else None,
                "refresh_interval": self.interval, "swaps": self.swaps,
                "last_error": self.last_error}
