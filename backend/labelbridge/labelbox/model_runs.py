"""Labelbox model runs through the SDK: a model's runs, a run's export as a stream of rows,
ground-truth labels attached to a run, and custom metrics sent to it.

Facts from the SDK 7.17 source this module relies on:

* ``model_run.export(params={"predictions": True})`` is an ``ExportTask``; its
  ``get_buffered_stream()`` downloads every chunk into a temporary file first and then yields
  one parsed row at a time, so memory stays bounded. A chunk download that fails raises
  (``requests.HTTPError``, a connection error, or an ``AssertionError`` on a short body).
* ``model_run.upsert_labels(label_ids=...)`` registers labels with the run, then polls the task
  every 5 s (it returns at once when the first status is COMPLETE).
* Custom metrics are ``ScalarMetric`` annotations in a ``Label`` uploaded with
  ``MEAPredictionImport`` (what ``model_run.add_predictions`` does). A ``Label`` may hold
  metrics only: ``NDLabel`` serializes each ``ScalarMetric`` as its own NDJSON line
  (``NDScalarMetric``: uuid, dataRow, metricValue, metricName, aggregation), so per-data-row
  figures can be sent on their own, without predictions. Limits the SDK enforces: values in
  [0, 1e8], the names ``iou``, ``precision``, ``recall``, ``f1`` and ``*_count`` are reserved.
  Labelbox's documented limits: at most 20 metrics per data row, upserted by name; the data
  rows must already be in the run.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import labelbox as lb
import labelbox.types as lbt
from labelbox.data.annotation_types import ScalarMetric, ScalarMetricAggregation
from lbox import exceptions as lbx

from labelbridge.labelbox.gateway import _timestamp, classify
from labelbridge.model.sink import LineStatus, PermanentError, TransientError


@dataclass(frozen=True)
class RunInfo:
    id: str
    name: str
    model_id: str
    created_at: float   # seconds since the epoch
    updated_at: float


@dataclass(frozen=True)
class RunExport:
    total: int | None     # rows, when Labelbox says
    rows: Iterator[dict]  # export-v2 rows, one at a time


@dataclass(frozen=True)
class Metric:
    """One custom metric of a data row: a count (summed) or a mean."""
    name: str
    value: float
    mean: bool = False


def _info(run) -> RunInfo:
    return RunInfo(run.uid, run.name or "", run.model_id or "", _timestamp(run.created_at),
                   _timestamp(run.updated_at or run.created_at))


def _sdk(fn):
    """Run an SDK call, its failures classified as transient or permanent."""
    try:
        return fn()
    except (TransientError, PermanentError):
        raise
    except Exception as exc:
        raise classify(exc) from exc


class ModelRunClient:
    def __init__(self, api_key: str, *, endpoint: str, rest_endpoint: str, app_url: str,
                 poll_interval: float = 2.0, timeout: float = 1800.0) -> None:
        self.client = lb.Client(api_key=api_key, endpoint=endpoint, rest_endpoint=rest_endpoint,
                                app_url=app_url)
        self.poll_interval = poll_interval
        self.timeout = timeout

    # ----- which run ----------------------------------------------------------------------
    def run(self, run_id: str) -> RunInfo:
        try:
            return _info(_sdk(lambda: self.client.get_model_run(run_id)))
        except PermanentError as exc:
            raise PermanentError(f"model run {run_id}: {exc}") from exc

    def runs(self, model_id: str) -> list[RunInfo]:
        """The model's runs, oldest first."""
        def fetch():
            return [_info(r) for r in self.client.get_model(model_id).model_runs()]
        try:
            return sorted(_sdk(fetch), key=lambda r: (r.created_at, r.id))
        except PermanentError as exc:
            raise PermanentError(f"model {model_id}: {exc}") from exc

    def newest_run(self, model_id: str, pattern: re.Pattern | None = None) -> RunInfo | None:
        """The most recently created run of the model whose name matches ``pattern``."""
        runs = [r for r in self.runs(model_id) if pattern is None or pattern.search(r.name)]
        return runs[-1] if runs else None

    # ----- reading a run ------------------------------------------------------------------
    def export(self, run_id: str) -> RunExport:
        """The run's rows with their predictions, streamed; a failure while streaming raises
        ``TransientError`` / ``PermanentError`` from the iterator."""
        def start():
            task = self.client.get_model_run(run_id).export(
                params={"predictions": True, "data_row_details": True})
            task.wait_till_done()
            if task.has_errors():
                errors = [e.json for e in task.get_buffered_stream(
                    stream_type=lb.StreamType.ERRORS)]
                raise PermanentError(f"Labelbox export of model run {run_id} failed: "
                                     f"{errors[:3]}")
            if not task.has_result():
                return None, None
            return task, task.get_total_lines(lb.StreamType.RESULT)

        task, total = _sdk(start)
        return RunExport(total if task else 0, self._rows(task) if task else iter(()))

    @staticmethod
    def _rows(task) -> Iterator[dict]:
        try:
            for item in task.get_buffered_stream():
                yield item.json
        except Exception as exc:
            raise classify(exc) from exc

    # ----- closing the loop ---------------------------------------------------------------
    def newest_labels(self, project_id: str, data_row_ids: Iterable[str]) -> dict[str, str]:
        """data row id -> the newest label our API user made on it in the project."""
        def fetch() -> dict[str, str]:
            me = self.client.get_user().uid
            out: dict[str, str] = {}
            for row_id in dict.fromkeys(data_row_ids):
                try:
                    labels = list(self.client.get_data_row(row_id).labels())
                except lbx.ResourceNotFoundError:
                    continue
                ours = [lab for lab in labels if lab.project().uid == project_id and
                        (lab.created_by() is None or lab.created_by().uid == me)]
                if ours:
                    out[row_id] = max(ours, key=lambda lab: _timestamp(lab.created_at)).uid
            return out
        return _sdk(fetch)

    def attach_labels(self, run_id: str, label_ids: list[str]) -> None:
        """Register ground-truth labels with the run (Labelbox then compares them with the
        run's predictions in its own model metrics)."""
        if label_ids:
            _sdk(lambda: self.client.get_model_run(run_id).upsert_labels(
                label_ids=label_ids, timeout_seconds=int(self.timeout)))

    def send_metrics(self, run_id: str, name: str, metrics: dict[str, list[Metric]],
                     uuid_of) -> dict[str, LineStatus]:
        """Upload per-data-row custom metrics as one model-run import named ``name``.
        ``uuid_of(data_row_id, metric_name)`` gives each line its (stable) uuid."""
        labels = [lbt.Label(data=lbt.GenericDataRowData(uid=row), annotations=[
            ScalarMetric(metric_name=m.name, value=m.value, extra={"uuid": uuid_of(row, m.name)},
                         aggregation=(ScalarMetricAggregation.ARITHMETIC_MEAN if m.mean
                                      else ScalarMetricAggregation.SUM))
            for m in row_metrics]) for row, row_metrics in metrics.items() if row_metrics]
        if not labels:
            return {}

        def upload():
            try:
                imp = lb.MEAPredictionImport.create_from_objects(self.client, run_id, name,
                                                                 labels)
            except lbx.ResourceConflict:  # sent by an earlier attempt of ours
                imp = lb.MEAPredictionImport.from_name(self.client, run_id, name)
            deadline = time.monotonic() + self.timeout
            while imp.state == lb.AnnotationImportState.RUNNING:
                if time.monotonic() > deadline:
                    raise TransientError(f"metric import {name} still running")
                time.sleep(self.poll_interval)
                imp.refresh()
            if imp.state == lb.AnnotationImportState.FAILED:
                raise PermanentError(f"Labelbox rejected metric import {name}")
            return {s.get("uuid"): LineStatus(s.get("uuid"), s.get("status") == "SUCCESS", tuple(
                f"{e.get('name')}: {e.get('message')}" for e in s.get("errors") or []))
                for s in imp.statuses}
        return _sdk(upload)
