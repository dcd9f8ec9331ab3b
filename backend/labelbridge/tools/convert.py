"""Bulk conversions for the CLI: a Labelbox export -> Label Studio tasks with predictions, and a
Label Studio JSON export -> Labelbox NDJSON. Both stream their output and record every loss in
the report (the row loop adds file:line, data row, task and annotation to each)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Iterator

import orjson

from labelbridge.labelbox import export
from labelbridge.labelbox.masks import MaskSource, resolve_row
from labelbridge.labelbox.ndjson import DataRowMissing, to_ndjson
from labelbridge.labelstudio import video
from labelbridge.labelstudio.mapping import Mapping
from labelbridge.labelstudio.results import (PredictionCheck, ResultReader, ResultWriter,
                                             prediction_score)
from labelbridge.labelstudio.tasks import (data_row_ref, ls_task, media_mismatch, object_fields,
                                           task_text)
from labelbridge.model.features import FeatureTable
from labelbridge.model.report import ConversionReport


class ConvertError(ValueError):
    """The input cannot be converted; the message names the file and the reason."""


def lb_to_ls(export_path: Path, mapping: Mapping, selection: export.Selection, out: IO[bytes],
             report: ConversionReport, model_version: str | None = None,
             masks: MaskSource | None = None) -> int:
    """Write a JSON list of Label Studio tasks (data + predictions). Returns the task count.
    ``masks``: how mask PNGs are read (paths relative to the export's folder)."""
    fields = object_fields(mapping)
    if not fields:
        raise ConvertError("the label config has no object tag reading task data ($field)")
    check = PredictionCheck(mapping.config)
    count = 0
    base_dir = export_path if Path(export_path).is_dir() else Path(export_path).parent
    out.write(b"[")
    for name, n, line in export.iter_lines(export_path):
        row_json = export.parse_line(line, name, n)
        picked = export.compact_row(row_json, selection)
        if picked is None:
            dr = row_json["data_row"]
            report.loss("data row", f"no {selection.source.replace('_', ' ')} in this row: no "
                        "task written", data_row=dr.get("id") if isinstance(dr.get("id"), str)
                        else None, source=f"{name}:{n}")
            continue
        origin, compact = picked
        if masks is not None:
            resolve_row(compact, masks, base_dir)
        row = report.scope(source=f"{name}:{n}")
        dr = compact["data_row"]
        mismatch = media_mismatch(mapping, (compact.get("media") or {}).get("mime_type"))
        if mismatch:
            row.loss("data row", "skipped: the data row's media does not fit the label config",
                     data_row=dr.get("id"), detail=mismatch)
            continue
        tr = export.task_regions(compact, row)
        result = ResultWriter(mapping, row).write(tr)
        score = prediction_score(tr)
        prediction = {"result": result, "score": score,
                      "model_version": model_version or origin or "labelbox"}
        errors = check.check(prediction) if result else []
        for err in errors:
            row.loss("prediction", "rejected by LabelInterface validation",
                     data_row=tr.data_row.id, detail=err)
        out.write(b"\n" if count == 0 else b",\n")
        task = ls_task(tr.data_row, fields[0], [prediction] if result and not errors else [])
        task["data"].update(video.rate_data(mapping, tr.video))   # a frameRate="$fps" field
        out.write(orjson.dumps(task))
        count += 1
    out.write(b"\n]\n")
    return count


def _tasks(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, task) of a Label Studio export: a JSON list, or one task per line."""
    raw = path.read_bytes()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list):
        yield from ((f"{path.name}[{i}]", t) for i, t in enumerate(data))
        return
    if isinstance(data, dict):
        yield path.name, data
        return
    for n, line in enumerate(raw.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path.name}:{n}", orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ConvertError(f"{path}:{n}: not a Label Studio JSON export: {exc}") from None


def _live(task: dict) -> list[dict]:
    anns = task.get("annotations")
    return [a for a in anns if isinstance(a, dict) and not a.get("was_cancelled")] \
        if isinstance(anns, list) else []


def _chosen_annotation(task: dict) -> dict | None:
    """The annotation that becomes ground truth: ground-truth flagged first, then the newest."""
    live = _live(task)
    if not live:
        return None
    return max(live, key=lambda a: (bool(a.get("ground_truth")),
                                    str(a.get("updated_at") or a.get("created_at") or "")))


def ls_to_lb(tasks_path: Path, mapping: Mapping, out: IO[bytes], report: ConversionReport,
             include_relations: bool = False, features: FeatureTable | None = None) -> int:
    """Write NDJSON lines for every annotated task. Returns the line count."""
    lines = 0
    for where, task in _tasks(tasks_path):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            report.loss("task", "not a task (no 'data' object)", source=where)
            continue
        scope = report.scope(task=str(task.get("id")), source=where)
        anns = task.get("annotations") if isinstance(task.get("annotations"), list) else []
        for a in anns:
            if isinstance(a, dict) and a.get("was_cancelled"):
                scope.loss("annotation", "skipped task (was_cancelled): not exported",
                           annotation=str(a.get("id")))
        ann = _chosen_annotation(task)
        if ann is None:
            continue
        for other in _live(task):
            if other is not ann:
                scope.loss("annotation", "not exported: one ground-truth label per data row",
                           annotation=str(other.get("id")))
        scope = scope.scope(annotation=str(ann.get("id")))
        data = task["data"]
        tr = ResultReader(mapping, scope).read(ann.get("result") or [], data_row_ref(data),
                                               task_text=task_text(data, mapping),
                                               task_data=data)
        try:
            ndjson = to_ndjson(tr, scope, rotated_boxes=mapping.overrides.rotated_boxes,
                               include_relations=include_relations, features=features)
        except DataRowMissing as exc:
            scope.loss("task", "the task names no Labelbox data row", detail=str(exc))
            continue
        for line in ndjson:
            out.write(orjson.dumps(line) + b"\n")
            lines += 1
    return lines
