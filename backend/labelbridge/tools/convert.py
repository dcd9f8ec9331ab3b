"""Bulk conversions for the CLI: a Labelbox export -> Label Studio tasks with predictions, and a
Label Studio JSON export -> Labelbox NDJSON. Both stream their output and return a report."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Iterator

import orjson

from labelbridge.labelbox import export
from labelbridge.labelbox.masks import MaskSource, resolve_row
from labelbridge.labelbox.ndjson import DataRowMissing, to_ndjson
from labelbridge.labelstudio.mapping import Mapping
from labelbridge.labelstudio.results import ResultReader, ResultWriter, prediction_score
from labelbridge.labelstudio.tasks import (data_row_ref, ls_task, media_mismatch, object_fields,
                                           task_text)
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
    li = mapping.interface
    count = 0
    base_dir = export_path if Path(export_path).is_dir() else Path(export_path).parent
    out.write(b"[")
    for row in export.iter_rows(export_path):
        picked = export.compact_row(row, selection)
        if picked is None:
            continue
        origin, compact = picked
        if masks is not None:
            resolve_row(compact, masks, base_dir)
        mismatch = media_mismatch(mapping, (compact.get("media") or {}).get("mime_type"))
        if mismatch:
            report.loss("data row", f"skipped: {mismatch}", None, compact["data_row"].get("id"))
            continue
        tr = export.task_regions(compact, report)
        result = ResultWriter(mapping, report).write(tr)
        errors = li.validate_prediction({"result": result}, return_errors=True) if result else []
        for err in errors:
            report.loss("prediction", f"rejected by LabelInterface validation: {err}", None,
                        tr.data_row.id)
        predictions = []
        if result and not errors:
            predictions.append({"result": result, "score": prediction_score(tr),
                                "model_version": model_version or origin or "labelbox"})
        out.write(b"\n" if count == 0 else b",\n")
        out.write(orjson.dumps(ls_task(tr.data_row, fields[0], predictions)))
        count += 1
    out.write(b"\n]\n")
    return count


def _tasks(path: Path) -> Iterator[dict]:
    """Tasks of a Label Studio export: a JSON list, or one task per line."""
    raw = path.read_bytes()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list):
        yield from data
        return
    if isinstance(data, dict):
        yield data
        return
    for n, line in enumerate(raw.splitlines(), 1):
        if line.strip():
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ConvertError(f"{path}:{n}: not a Label Studio JSON export: {exc}") from None


def _chosen_annotation(task: dict) -> dict | None:
    """The annotation that becomes ground truth: ground-truth flagged first, then the newest."""
    live = [a for a in task.get("annotations") or []
            if isinstance(a, dict) and not a.get("was_cancelled")]
    if not live:
        return None
    return max(live, key=lambda a: (bool(a.get("ground_truth")),
                                    str(a.get("updated_at") or a.get("created_at") or "")))


def ls_to_lb(tasks_path: Path, mapping: Mapping, out: IO[bytes], report: ConversionReport,
             include_relations: bool = False) -> int:
    """Write NDJSON lines for every annotated task. Returns the line count."""
    lines = 0
    reader = ResultReader(mapping, report)
    for i, task in enumerate(_tasks(tasks_path)):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ConvertError(f"{tasks_path}: task #{i} has no 'data' object")
        skipped = sum(1 for a in task.get("annotations") or [] if a.get("was_cancelled"))
        for _ in range(skipped):
            report.loss("annotation", "skipped task (was_cancelled): not exported", None,
                        str(task.get("id")))
        ann = _chosen_annotation(task)
        if ann is None:
            continue
        others = len([a for a in task.get("annotations") or [] if not a.get("was_cancelled")]) - 1
        if others > 0:
            report.loss("annotation", f"{others} more annotation(s) of the task not exported "
                        "(one ground-truth label per data row)", None, str(task.get("id")))
        data = task["data"]
        tr = reader.read(ann.get("result") or [], data_row_ref(data),
                         task_text=task_text(data, mapping))
        try:
            ndjson = to_ndjson(tr, report, rotated_boxes=mapping.overrides.rotated_boxes,
                               include_relations=include_relations)
        except DataRowMissing as exc:
            report.loss("task", str(exc), None, str(task.get("id")))
            continue
        for line in ndjson:
            out.write(orjson.dumps(line) + b"\n")
            lines += 1
    return lines
