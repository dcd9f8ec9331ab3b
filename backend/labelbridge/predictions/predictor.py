"""Label Studio tasks -> prepared predictions from the index.

A *context* is everything that changes a prediction's bytes: the label config, the mapping and
the model version. For each context every row is converted once (Labelbox regions -> Label
Studio result), validated against the label config (``PredictionCheck``: the verdicts of
label-studio-sdk's ``LabelInterface``, from a table compiled once; Label Studio itself does not
validate predictions), and stored as JSON bytes, with the row's losses beside it
(``labelbridge losses``); ``/predict`` then only looks them up.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import orjson

from labelbridge.labelbox.export import task_regions
from labelbridge.labelstudio.mapping import Mapping, Overrides
from labelbridge.labelstudio.results import PredictionCheck, ResultWriter, prediction_score
from labelbridge.labelstudio.tasks import TaskKeys, object_fields, task_keys
from labelbridge.model.report import ConversionReport, Loss
from labelbridge.predictions.indexer import gc_paused
from labelbridge.predictions.store import PredictionStore

log = logging.getLogger(__name__)
NO_PREDICTION = b"[]"  # per-task element Label Studio stores nothing for (it asks again later)


@dataclass
class Context:
    key: str
    mapping: Mapping
    fields: list[str]
    check: PredictionCheck
    report: ConversionReport = field(default_factory=ConversionReport)
    invalid: int = 0


def _lines(losses: list[Loss]) -> bytes:
    return b"".join(orjson.dumps(loss.as_dict()) + b"\n" for loss in losses)


class Predictor:
    def __init__(self, store: PredictionStore, overrides: Overrides, model_version: str,
                 match_keys: Sequence[str] = ("global_key", "data_row_id", "url")) -> None:
        self.store = store
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
                return ctx
        mapping = Mapping(label_config, self.overrides, self.store.feature_names())
        key = hashlib.sha1(f"{mapping.fingerprint}:{self.model_version}".encode()).hexdigest()
        ctx = Context(key, mapping, object_fields(mapping), PredictionCheck(mapping.interface))
        self.store.register_context(key, label_config)
        with self._lock:
            self._contexts[raw] = ctx
            while len(self._contexts) > 32:
                self._contexts.popitem(last=False)
        return ctx

    # -- conversion
    def _convert(self, ctx: Context, pk: int, payload: bytes) -> tuple[bytes, bytes | None]:
        """(prediction, losses as JSON lines or None) of one row."""
        losses: list[Loss] = []
        report = ConversionReport(sink=losses.append, announce=False)
        tr = task_regions(orjson.loads(payload), report)
        result = ResultWriter(ctx.mapping, report).write(tr)
        row = tr.data_row.id or tr.data_row.global_key
        result = self._validated(ctx, result, report.scope(data_row=row))
        score = prediction_score(tr)
        if score is not None and not 0.0 <= score <= 1.0:
            report.loss("prediction", "the mean confidence is outside 0..1: no score sent",
                        data_row=row, detail=str(score))
            score = None
        ctx.report.merge(report)
        prediction = NO_PREDICTION if not result else orjson.dumps(
            {"result": result, "score": score, "model_version": self.model_version})
        return prediction, _lines(losses) if losses else None

    def _validated(self, ctx: Context, result: list[dict], report) -> list[dict]:
        if not result or not ctx.check.check({"result": result}):
            return result
        keep, dropped = [], set()
        regions = [r for r in result if r.get("type") != "relation"]
        for i, region in enumerate(regions):
            errors = ctx.check.region_errors(region, i, regions)
            if errors:
                dropped.add(region.get("id"))
                ctx.invalid += 1
                report.loss(region.get("type", "result"), "rejected by LabelInterface "
                            "validation", region.get("from_name"), region=region.get("id"),
                            detail="; ".join(errors))
        for r in result:
            if r.get("type") == "relation":
                if r.get("from_id") in dropped or r.get("to_id") in dropped:
                    report.loss("relationship", "related region failed validation",
                                detail=f"{r.get('from_id')} -> {r.get('to_id')}")
                    continue
            elif r.get("id") in dropped:
                continue
            keep.append(r)
        return keep

    def _convert_rows(self, ctx: Context, rows: dict[int, tuple[str | None, bytes]],
                      pks: list[int]) -> None:
        prepared, losses = [], []
        for pk in pks:
            if pk in rows:
                prediction, lost = self._convert(ctx, pk, rows[pk][1])
                prepared.append((pk, prediction))
                if lost:
                    losses.append((pk, lost))
        self.store.put_prepared(ctx.key, prepared, losses)

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
            done = 0
            with gc_paused():
                for pks in self.store.iter_pks(1000):
                    have = self.store.prepared(ctx.key, pks)
                    todo = [pk for pk in pks if pk not in have]
                    self._convert_rows(ctx, self.store.rows(todo), todo)
                    done += len(pks)
                    if progress:
                        progress(done)
            self.store.finish_context(ctx.key, ctx.report.as_dict())
            log.info("predictions prepared for label config %s: %s", ctx.key[:12],
                     dict(ctx.report.converted))
        finally:
            with self._lock:
                self._preparing.discard(ctx.key)
        return ctx

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
        return [ready.get(pk, NO_PREDICTION) if pk is not None else NO_PREDICTION for pk in pks]
