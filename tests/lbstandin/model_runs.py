"""Models and model runs in the Labelbox stand-in: what the real SDK 7.17 sends for them.

* ``client.get_model(id)`` / ``model.model_runs()``: ``model(where:{id})`` with a paginated
  ``modelRuns(skip, first)``; runs carry ``name``, ``createdAt`` and ``updatedAt`` (bumped by
  ``set_model_run_rows``).
* Run exports are served in line-aligned chunks (``export_chunk_bytes``); ``fail_export`` makes
  the chunk download after ``after_chunks`` good ones fail (``500``/``503`` status or ``drop``),
  so an export breaks mid-stream as a signed-URL download can.
* ``model_run.upsert_labels(label_ids=[...])``: ``createMEAModelRunLabelRegistrationTask`` and its
  status query. Every label must exist, be live and be on a data row of the run; otherwise the
  task is FAILED with a message (the SDK raises ``Exception("Job failed.")``).
* ``MEAPredictionImport`` (``model_run.add_predictions``): ``createModelErrorAnalysisPredictionImport``
  (multipart upload) and ``modelErrorAnalysisPredictionImport(where:{modelRunId, name})``. Only
  custom-metric lines are modelled (a prediction line fails with ``UnsupportedAnnotation``).
  Checked per line: keys, uuid, ``dataRow`` (a data row of the run), ``metricName`` (set, not
  reserved), ``metricValue`` (0..1e8, or 2..15 confidence -> value pairs), ``aggregation``, at
  most 20 metric names per data row. Metrics are upserted by (data row, name, feature, subclass).
"""

from __future__ import annotations

import copy
import json
import time
import uuid as uuidlib
from typing import TYPE_CHECKING, Any

from .graphql import GQLError
from .validate import MalformedImport, parse_body

if TYPE_CHECKING:
    from .server import LabelboxStandIn

RESERVED_METRIC_NAMES = {"true_positive_count", "false_positive_count", "true_negative_count",
                         "false_negative_count", "precision", "recall", "f1", "iou"}
AGGREGATIONS = {"ARITHMETIC_MEAN", "GEOMETRIC_MEAN", "HARMONIC_MEAN", "SUM"}
METRIC_KEYS = {"uuid", "dataRow", "metricValue", "metricName", "featureName", "subclassName",
               "aggregation"}
MAX_METRICS_PER_DATA_ROW = 20
MAX_METRIC_VALUE = 100_000_000


# ----- setup and inspection (called as methods of LabelboxStandIn) --------------------------

def add_model(s: LabelboxStandIn, model_id: str, name: str = "model",
              ontology_id: str = "cstandinontology000000001") -> None:
    with s._lock:
        s._models[model_id] = {"id": model_id, "name": name, "ontology_id": ontology_id}


def run_data_row_ids(run: dict) -> set[str]:
    return {(r.get("data_row") or {}).get("id") for r in run["export_rows"]}


def set_model_run_rows(s: LabelboxStandIn, run_id: str, rows: list[dict]) -> None:
    """Replace a run's export rows (its predictions changed): ``updatedAt`` moves on."""
    from .server import now_iso
    with s._lock:
        run = s._model_runs[run_id]
        run["export_rows"] = [copy.deepcopy(r) for r in rows]
        run["updated_at"] = now_iso()
        run.pop("bodies", None)


def export_body(run: dict, predictions: bool) -> bytes:
    """The run's export as NDJSON (without ``predictions`` unless asked), made once per run
    state: serializing a large run on every export would be the stand-in's cost, not the
    client's."""
    bodies = run.setdefault("bodies", {})
    if predictions not in bodies:
        rows = run["export_rows"]
        if not predictions:
            rows = copy.deepcopy(rows)
            for row in rows:
                for model in (row.get("experiments") or {}).values():
                    for r in (model.get("runs") or {}).values():
                        r.pop("predictions", None)
        bodies[predictions] = "".join(json.dumps(r, separators=(",", ":")) + "\n"
                                      for r in rows).encode()
    return bodies[predictions]


def fail_export(s: LabelboxStandIn, run_id: str, after_chunks: int, kind: str = "500",
                times: int = 1) -> None:
    """The next ``times`` exports of the run fail on the chunk after ``after_chunks`` good ones."""
    if kind not in ("500", "503", "drop"):
        raise ValueError(f"export fault kind must be 500, 503 or drop, not {kind!r}")
    with s._lock:
        s._export_faults[run_id] = {"after_chunks": int(after_chunks), "kind": kind,
                                    "times": int(times)}


def model_run_state(s: LabelboxStandIn, run_id: str) -> dict:
    """What the bridge attached to a run: label ids, metrics, metric imports."""
    with s._lock:
        run = s._model_runs[run_id]
        return copy.deepcopy({
            "labels": sorted(run.get("labels", ())),
            "metrics": [{"data_row_id": k[0], "metric_name": k[1], "feature_name": k[2],
                         "subclass_name": k[3], **v} for k, v in run.get("metrics", {}).items()],
            "imports": [{k: i[k] for k in ("name", "state", "statuses")}
                        for i in s._mea_imports if i["model_run_id"] == run_id]})


# ----- export chunks ------------------------------------------------------------------------

def on_export_task(s: LabelboxStandIn, task_id: str, run_id: str) -> None:
    """Tag a new export task with its run and the fault it is to suffer, if any."""
    task = s._tasks[task_id]
    task["model_run_id"] = run_id
    fault = s._export_faults.get(run_id)
    if fault and fault["times"] > 0:
        fault["times"] -= 1
        task["fault"] = {"after_chunks": fault["after_chunks"], "kind": fault["kind"]}
    task["chunks_served"] = 0


def on_export_chunk(s: LabelboxStandIn, task: dict, url: str) -> None:
    """Mark the chunk file a faulty export is to fail on."""
    fault = task.get("fault")
    if fault is not None and task.get("chunks_served", 0) == fault["after_chunks"]:
        token = url.split("/files/", 1)[1].split("/", 1)[0]
        s._files[token]["fault"] = fault["kind"]
    task["chunks_served"] = task.get("chunks_served", 0) + 1


# ----- GraphQL ------------------------------------------------------------------------------

def _model_obj(s: LabelboxStandIn, m: dict) -> dict:
    runs = sorted((r for r in s._model_runs.values() if r["model_id"] == m["id"]),
                  key=lambda r: r["created_at"])
    return {"__typename": "Model", "id": m["id"], "name": m["name"],
            "ontologyId": m["ontology_id"],
            "modelRuns": lambda a: s._page([s._model_run_obj(r) for r in runs], a)}


def _mea_obj(imp: dict) -> dict:
    return {"__typename": "ModelErrorAnalysisPredictionImport", "id": imp["id"],
            "name": imp["name"], "modelRunId": imp["model_run_id"], "state": imp["state"],
            "progress": "0%" if imp["state"] == "RUNNING" else "100%",
            "inputFileUrl": imp["input_url"], "errorFileUrl": imp["error_url"],
            "statusFileUrl": imp["status_url"]}


def query_resolvers(s: LabelboxStandIn) -> dict:
    def model(a):
        mid = s._where_id(a, "model")
        if mid not in s._models:
            raise GQLError(f"Resource not found: model {mid}", "RESOURCE_NOT_FOUND")
        return _model_obj(s, s._models[mid])

    def label_task_status(a):
        tid = s._where_id(a, "MEALabelRegistrationTaskStatus")
        if tid not in s._registrations:
            raise GQLError(f"Resource not found: task {tid}", "RESOURCE_NOT_FOUND")
        return dict(s._registrations[tid])

    def mea_import(a):
        where = a.get("where") or {}
        for imp in s._mea_imports:
            if imp["model_run_id"] == where.get("modelRunId") and imp["name"] == where.get("name"):
                _advance(s, imp)
                return _mea_obj(imp)
        raise GQLError(f"stand-in: no model run import named {where.get('name')!r} in run "
                       f"{where.get('modelRunId')}", "RESOURCE_NOT_FOUND")

    return {"model": model, "MEALabelRegistrationTaskStatus": label_task_status,
            "modelErrorAnalysisPredictionImport": mea_import}


def mutation_resolvers(s: LabelboxStandIn) -> dict:
    def register_labels(a):
        rid = (a.get("where") or {}).get("id")
        ids = (a.get("data") or {}).get("labelIds")
        if rid not in s._model_runs:
            raise GQLError(f"stand-in: model run {rid} does not exist or you have no access to "
                           "it", "AUTHORIZATION_ERROR")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise GQLError("stand-in: labelIds must be a non-empty list of ids",
                           "MALFORMED_REQUEST")
        run = s._model_runs[rid]
        rows = run_data_row_ids(run)
        problem = None
        for lid in ids:
            lab = s._labels.get(lid)
            if lab is None or lab["deleted"]:
                problem = f"label {lid} does not exist"
            elif lab["data_row_id"] not in rows:
                problem = f"label {lid} is on data row {lab['data_row_id']}, not in the run"
            if problem:
                break
        else:
            run.setdefault("labels", set()).update(ids)
        tid = str(uuidlib.uuid4())
        s._registrations[tid] = {"status": "FAILED" if problem else "COMPLETE",
                                 "errorMessage": problem}
        return tid

    def create_mea(a):
        return _mea_obj(_create_mea(s, a.get("data") or {}))

    return {"createMEAModelRunLabelRegistrationTask": register_labels,
            "createModelErrorAnalysisPredictionImport": create_mea}


# ----- metric imports -----------------------------------------------------------------------

def _create_mea(s: LabelboxStandIn, data: dict) -> dict:
    from .server import _Upload, new_cuid
    rid, name = data.get("modelRunId"), data.get("name")
    if rid not in s._model_runs:
        raise GQLError(f"stand-in: model run {rid} does not exist or you have no access to it",
                       "AUTHORIZATION_ERROR")
    if not isinstance(name, str) or not name:
        raise GQLError("stand-in: import name must be a non-empty string", "MALFORMED_REQUEST")
    if any(i["model_run_id"] == rid and i["name"] == name for i in s._mea_imports):
        raise GQLError(f"An import with the name '{name}' already exists in model run {rid}",
                       "RESOURCE_CONFLICT")
    upload = (data.get("filePayload") or {}).get("file")
    if not isinstance(upload, _Upload):
        raise GQLError("stand-in: filePayload.file is not an uploaded file part",
                       "MALFORMED_REQUEST")
    imp = {"id": new_cuid(), "model_run_id": rid, "name": name, "body": upload.data,
           "state": "RUNNING", "statuses": [], "t0": time.monotonic(), "status_url": None,
           "error_url": None, "input_url": s._add_file("inputFile", upload.data)}
    s._mea_imports.append(imp)
    return imp


def _advance(s: LabelboxStandIn, imp: dict) -> None:
    if imp["state"] != "RUNNING" or time.monotonic() - imp["t0"] < s._import_duration:
        return
    run = s._model_runs[imp["model_run_id"]]
    try:
        lines = parse_body(imp["body"])
    except MalformedImport as e:
        imp["state"] = "FAILED"
        imp["statuses"] = [{"uuid": None, "dataRow": None, "status": "FAILURE", "errors": [
            {"name": "InvalidNDJSON", "message": str(e), "additionalInfo": None}]}]
    else:
        imp["statuses"] = [_metric_status(run, line) for line in lines]
        imp["state"] = "FINISHED"
    body = "\n".join(json.dumps(st) for st in imp["statuses"]).encode()
    errors = "\n".join(json.dumps(st) for st in imp["statuses"] if st["status"] == "FAILURE")
    imp["status_url"] = s._add_file("statusFile", body)
    imp["error_url"] = s._add_file("errorFile", errors.encode())


def _metric_status(run: dict, line: Any) -> dict:
    data_row = line.get("dataRow") if isinstance(line, dict) else None
    status = {"uuid": line.get("uuid") if isinstance(line, dict) else None,
              "dataRow": data_row, "status": "SUCCESS"}
    try:
        key, value = _check_metric(run, line)
    except ValueError as e:
        name, message = e.args
        status.update(status="FAILURE", errors=[{"name": name, "message": message,
                                                 "additionalInfo": None}])
        return status
    metrics = run.setdefault("metrics", {})
    names = {k[1] for k in metrics if k[0] == key[0]} | {key[1]}
    if len(names) > MAX_METRICS_PER_DATA_ROW:
        status.update(status="FAILURE", errors=[{
            "name": "InvalidAnnotation", "additionalInfo": None,
            "message": f"a data row may have at most {MAX_METRICS_PER_DATA_ROW} metrics"}])
        return status
    metrics[key] = value
    return status


def _check_metric(run: dict, line: Any) -> tuple[tuple, dict]:
    if not isinstance(line, dict):
        raise ValueError("InvalidAnnotation", "a line must be a JSON object")
    if "metricValue" not in line:
        raise ValueError("UnsupportedAnnotation", "stand-in: only custom metric lines are "
                         "modelled in model run imports")
    unknown = set(line) - METRIC_KEYS
    if unknown:
        raise ValueError("InvalidAnnotation", f"unknown keys {sorted(unknown)}")
    try:
        uuidlib.UUID(str(line.get("uuid")))
    except ValueError:
        raise ValueError("InvalidUUID", f"uuid {line.get('uuid')!r} is not a valid 128-bit "
                         "UUID") from None
    dr = line.get("dataRow")
    if not isinstance(dr, dict) or set(dr) != {"id"} or not isinstance(dr["id"], str):
        raise ValueError("InvalidDataRow", "dataRow must be {\"id\": ...} for a model run")
    if dr["id"] not in run_data_row_ids(run):
        raise ValueError("DataRowNotFound", f"data row {dr['id']} is not in the model run")
    name = line.get("metricName")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("InvalidAnnotation", "metricName is required")
    if name.strip().lower() in RESERVED_METRIC_NAMES:
        raise ValueError("InvalidAnnotation", f"{name!r} is a reserved metric name")
    value = line["metricValue"]
    if isinstance(value, dict):
        ok = 2 <= len(value) <= 15 and all(_in_range(v, MAX_METRIC_VALUE) and
                                           _in_range(_float(k), 1) for k, v in value.items())
    else:
        ok = _in_range(value, MAX_METRIC_VALUE)
    if not ok:
        raise ValueError("InvalidAnnotation", f"metricValue {value!r} is out of range")
    aggregation = line.get("aggregation", "ARITHMETIC_MEAN")
    if aggregation not in AGGREGATIONS:
        raise ValueError("InvalidAnnotation", f"aggregation {aggregation!r} is not one of "
                         f"{sorted(AGGREGATIONS)}")
    key = (dr["id"], name, line.get("featureName"), line.get("subclassName"))
    return key, {"value": value, "aggregation": aggregation, "uuid": line["uuid"]}


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _in_range(v: Any, top: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= top
