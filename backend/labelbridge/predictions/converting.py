"""One row of the index -> its Label Studio prediction, validated, and what it lost.

Used by the predictor in its own process and by prepare workers (``prepare_worker``), so a batch
of rows converts the same wherever it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import orjson

from labelbridge.labelbox.export import task_regions
from labelbridge.labelstudio.mapping import Mapping
from labelbridge.labelstudio.results import PredictionCheck, ResultWriter, prediction_score
from labelbridge.model.report import ConversionReport, Loss

NO_PREDICTION = b"[]"  # per-task element Label Studio stores nothing for (it asks again later)


@dataclass
class Converted:
    """A batch of rows converted: (pk, prediction), (pk, losses as JSON lines), their counts."""

    prepared: list[tuple[int, bytes]] = field(default_factory=list)
    losses: list[tuple[int, bytes]] = field(default_factory=list)
    report: ConversionReport = field(default_factory=lambda: ConversionReport(announce=False))
    invalid: int = 0   # regions LabelInterface validation rejected


class RowConverter:
    def __init__(self, mapping: Mapping, model_version: str) -> None:
        self.mapping = mapping
        self.check = PredictionCheck(mapping.config)
        self.model_version = model_version

    def __reduce__(self) -> tuple:  # to a prepare worker (prepare_worker.py)
        return (RowConverter, (self.mapping, self.model_version))

    def batch(self, rows: dict[int, tuple[str | None, bytes]], pks: Iterable[int]) -> Converted:
        done = Converted()
        lost: list[Loss] = []  # the losses of the row being converted
        report = done.report
        report.sink = lost.append
        writer = ResultWriter(self.mapping, report)
        for pk in pks:
            if pk in rows:
                done.prepared.append((pk, self.row(rows[pk][1], report, writer, done)))
                if lost:
                    done.losses.append((pk, b"".join(orjson.dumps(loss.as_dict()) + b"\n"
                                                     for loss in lost)))
                    lost.clear()
        report.sink = None  # the batch may be pickled back from a worker
        return done

    def row(self, payload: bytes, report: ConversionReport, writer: ResultWriter,
            done: Converted) -> bytes:
        tr = task_regions(orjson.loads(payload), report)
        result = writer.write(tr)
        row = tr.data_row.id or tr.data_row.global_key
        result = self._validated(result, report, row, done)
        score = prediction_score(tr)
        if score is not None and not 0.0 <= score <= 1.0:
            report.loss("prediction", "the mean confidence is outside 0..1: no score sent",
                        data_row=row, detail=str(score))
            score = None
        if not result:
            return NO_PREDICTION
        return orjson.dumps({"result": result, "score": score,
                             "model_version": self.model_version})

    def _validated(self, result: list[dict], report: ConversionReport, row: str | None,
                   done: Converted) -> list[dict]:
        if not result or not self.check.check({"result": result}):
            return result
        scoped = report.scope(data_row=row)
        keep, dropped = [], set()
        regions = [r for r in result if r.get("type") != "relation"]
        for i, region in enumerate(regions):
            errors = self.check.region_errors(region, i, regions)
            if errors:
                dropped.add(region.get("id"))
                done.invalid += 1
                scoped.loss(region.get("type", "result"), "rejected by LabelInterface "
                            "validation", region.get("from_name"), region=region.get("id"),
                            detail="; ".join(errors))
        for r in result:
            if r.get("type") == "relation":
                if r.get("from_id") in dropped or r.get("to_id") in dropped:
                    scoped.loss("relationship", "related region failed validation",
                                detail=f"{r.get('from_id')} -> {r.get('to_id')}")
                    continue
            elif r.get("id") in dropped:
                continue
            keep.append(r)
        return keep
