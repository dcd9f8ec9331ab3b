"""Label Studio tasks -> prepared predictions from the index.

A *context* is everything that changes a prediction's bytes: the label config, the mapping and
the model version. For each context every row is converted once (Labelbox regions -> Label
Studio result), validated against the label config (``PredictionCheck``: the verdicts of
label-studio-sdk's ``LabelInterface``, from a table compiled once; Label Studio itself does not
validate predictions), and stored as JSON bytes, with the row's losses beside it
(``labelbridge losses``); ``/predict`` then only looks them up.

Any client may send a label config, so contexts are bounded: ``MAX_CONTEXTS`` in the index
(the least recently used goes, with its predictions and losses, when a new one comes; one
being prepared here stays), and 32 in memory. A context in use marks itself used at most once
a minute (``TOUCH_S``), so the one a project works with is never the one that goes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence


from labelbridge.labelstudio import video
from labelbridge.labelstudio.mapping import Mapping, Overrides
from labelbridge.labelstudio.results import RESULTS_VERSION
from labelbridge.labelstudio.tasks import TaskKeys, object_fields, task_keys
from labelbridge.model.report import ConversionReport
from labelbridge.predictions.converting import NO_PREDICTION, Converted, RowConverter
from labelbridge.predictions.indexer import gc_paused
from labelbridge.predictions.prepare_worker import PreparePool, worker_count
from labelbridge.predictions.store import PredictionStore

log = logging.getLogger(__name__)
MAX_CONTEXTS = 16   # conversion contexts kept in the index (each may hold a prediction a row)
MEMORY_CONTEXTS = 32
TOUCH_S = 60.0      # how often a context in use renews its place


@dataclass
class Context:
    key: str
    mapping: Mapping
    fields: list[str]
    converter: RowConverter
    report: ConversionReport = field(default_factory=ConversionReport)
    invalid: int = 0
    used_at: float = field(default_factory=time.monotonic)   # last marked used in the index
    # a prepared prediction -> the one for a task (the adapter's: a video frame rate read
    # from task data); None when predictions do not depend on the task
    for_task: Callable[[bytes, dict], bytes] | None = None


class Predictor:
    def __init__(self, store: PredictionStore, overrides: Overrides, model_version: str,
                 match_keys: Sequence[str] = ("global_key", "data_row_id", "url"),
                 workers: int | None = None, max_contexts: int = MAX_CONTEXTS) -> None:
        """``workers``: processes that prepare (None: one per CPU for a large index)."""
        self.store = store
        self.max_contexts = max_contexts
        self.workers = workers
        self.overrides = overrides
        self.model_version = model_version
        self.match_keys = tuple(match_keys)
        self._contexts: OrderedDict[str, Context] = OrderedDict()
        self._lock = threading.Lock()
        self._preparing: set[str] = set()

    # -- contexts
    def context(self, label_config: str) -> Context:
        raw = hashlib.sha1(label_config.encode("utf-8")).hexdigest()
        with self._lock:
            ctx = self._contexts.get(raw)
            if ctx is not None:
                self._contexts.move_to_end(raw)
                touch = time.monotonic() - ctx.used_at > TOUCH_S
                if touch:
                    ctx.used_at = time.monotonic()
        if ctx is not None:
            if touch:
                self.store.register_context(ctx.key, label_config)
            return ctx
        mapping = Mapping(label_config, self.overrides, self.store.feature_names())
        key = hashlib.sha1(f"{mapping.fingerprint}:{RESULTS_VERSION}:{self.model_version}"
                           .encode()).hexdigest()
        ctx = Context(key, mapping, object_fields(mapping),
                      RowConverter(mapping, self.model_version),
                      for_task=video.task_retimer(mapping))
        self.store.register_context(key, label_config)
        with self._lock:
            spare = self._preparing | {key}
        dropped = set(self.store.drop_contexts(self.max_contexts, spare))
        if dropped:
            log.info("prediction contexts %s dropped (at most %d are kept)",
                     ", ".join(sorted(k[:12] for k in dropped)), self.max_contexts)
        with self._lock:
            for k in [k for k, c in self._contexts.items() if c.key in dropped]:
                del self._contexts[k]
            self._contexts[raw] = ctx
            while len(self._contexts) > MEMORY_CONTEXTS:
                self._contexts.popitem(last=False)
        return ctx

    # -- conversion
    def _convert_rows(self, ctx: Context, rows: dict[int, tuple[str | None, bytes]],
                      pks: list[int]) -> None:
        self._store_converted(ctx, ctx.converter.batch(rows, pks))

    def _store_converted(self, ctx: Context, done: Converted) -> None:
        self.store.put_prepared(ctx.key, done.prepared, done.losses)
        with self._lock:
            ctx.report.merge(done.report)
            ctx.invalid += done.invalid

    def prepare(self, label_config: str, progress: Callable[[int], None] | None = None) -> Context:
        """Convert and validate every indexed row for this label config, once."""
        ctx = self.context(label_config)
        if self.store.context_complete(ctx.key):
            return ctx
        with self._lock:
            if ctx.key in self._preparing:
                return ctx
            self._preparing.add(ctx.key)
        try:
            workers = worker_count(self.store.count(), self.workers)
            if workers > 1:
                self._prepare_in_workers(ctx, workers, progress)
            else:
                done = 0
                with gc_paused():
                    for todo in self._todo(ctx):
                        self._convert_rows(ctx, self.store.rows(todo), todo)
                        done += len(todo)
                        if progress:
                            progress(done)
            self.store.finish_context(ctx.key, ctx.report.as_dict())
            log.info("predictions prepared for label config %s: %s", ctx.key[:12],
                     dict(ctx.report.converted))
        finally:
            with self._lock:
                self._preparing.discard(ctx.key)
        return ctx

    def _todo(self, ctx: Context) -> Iterator[list[int]]:
        """Batches of the row keys not prepared yet for ``ctx``."""
        for pks in self.store.iter_pks(1000):
            have = self.store.prepared(ctx.key, pks)
            todo = [pk for pk in pks if pk not in have]
            if todo:
                yield todo

    def _prepare_in_workers(self, ctx: Context, workers: int,
                            progress: Callable[[int], None] | None) -> None:
        pool = PreparePool((self.store.locator, ctx.converter), self._todo(ctx), workers)
        done = 0
        try:
            for converted in pool.results():
                self._store_converted(ctx, converted)
                done += len(converted.prepared)
                if progress:
                    progress(done)
        finally:
            pool.close()

    def prepare_in_background(self, label_config: str) -> None:
        ctx = self.context(label_config)
        if self.store.context_complete(ctx.key) or ctx.key in self._preparing:
            return
        threading.Thread(target=self._prepare_quietly, args=(label_config,), daemon=True,
                         name="prepare-predictions").start()

    def _prepare_quietly(self, label_config: str) -> None:
        try:
            self.prepare(label_config)
        except Exception:  # a background job must not die silently
            log.exception("preparing predictions failed")

    # -- lookup
    def match(self, keys: list[TaskKeys]) -> list[int | None]:
        """Row pk per task, trying the configured keys in order."""
        pks: list[int | None] = [None] * len(keys)
        for kind in self.match_keys:
            want = [(i, v) for i, k in enumerate(keys) if pks[i] is None and (v := k.get(kind))]
            if not want:
                continue
            found = self.store.find(kind, [v for _, v in want])
            for i, v in want:
                pks[i] = found.get(v)
        return pks

    def predict(self, tasks: Sequence[dict], label_config: str) -> list[bytes]:
        """One JSON element per task, in order: a prediction, or ``[]`` (nothing to store)."""
        ctx = self.context(label_config)
        keys = [task_keys(t.get("data") or {}, ctx.fields) for t in tasks]
        pks = self.match(keys)
        known = [pk for pk in pks if pk is not None]
        ready = self.store.prepared(ctx.key, known) if known else {}
        missing = [pk for pk in dict.fromkeys(known) if pk not in ready]
        if missing:
            self._convert_rows(ctx, self.store.rows(missing), missing)
            ready.update(self.store.prepared(ctx.key, missing))
        out = [ready.get(pk, NO_PREDICTION) if pk is not None else NO_PREDICTION for pk in pks]
        if ctx.for_task is not None:
            out = [b if b == NO_PREDICTION else ctx.for_task(b, t.get("data") or {})
                   for b, t in zip(out, tasks)]
        return out
