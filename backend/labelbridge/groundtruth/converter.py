"""A stored Label Studio annotation -> the NDJSON lines of its Labelbox ground truth."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable

import orjson

from labelbridge.labelbox.ndjson import DataRowMissing, to_ndjson
from labelbridge.labelstudio import webhooks
from labelbridge.labelstudio.mapping import Mapping, MappingError, Overrides
from labelbridge.labelstudio.results import ResultReader
from labelbridge.labelstudio.tasks import data_row_ref, object_fields, task_keys, task_text
from labelbridge.model.features import FeatureTable
from labelbridge.model.ids import ndjson_uuid
from labelbridge.model.regions import DataRowRef, TaskRegions
from labelbridge.model.report import ConversionReport

log = logging.getLogger(__name__)
CUID = re.compile(r"c[a-z0-9]{24}")


class ConversionFailed(ValueError):
    """The annotation cannot become Labelbox ground truth; the message says why."""


@dataclass
class GroundTruth:
    data_row: dict                         # {"id": ...} or {"globalKey": ...}
    lines: list[dict]
    regions: list[tuple[str, str, str | None]]   # (LS region id, uuid, Labelbox feature id)
    report: ConversionReport
    # for the edit report: the annotation as stored, what it says, and the mapping it was read with
    stored: webhooks.StoredAnnotation | None = None
    task_regions: TaskRegions | None = None
    mapping: Mapping | None = None


class GroundTruthConverter:
    """Converts annotations with the label config they were made with (cached per config)."""

    def __init__(self, label_config: Callable[[str], str | None], overrides: Overrides,
                 resolve_row: Callable[[dict, list[str]], DataRowRef | None],
                 labelbox_names: Callable[[], set[str]], include_relations: bool,
                 features: Callable[[], FeatureTable] | None = None,
                 media_size: Callable[[DataRowRef], tuple[int, int] | None] = lambda ref: None
                 ) -> None:
        self._label_config = label_config
        self._media_size = media_size
        self._overrides = overrides
        self._resolve_row = resolve_row
        self._names = labelbox_names
        self._include_relations = include_relations
        self._features = features  # the project's Labelbox features: schema ids, exact names
        self.losses = ConversionReport()  # every annotation's, counted: logs each kind once
        self._mappings: dict[str, Mapping] = {}

    def mapping(self, config_hash: str) -> Mapping:
        if config_hash not in self._mappings:
            xml = self._label_config(config_hash)
            if xml is None:
                raise ConversionFailed(f"label config {config_hash[:12]} is unknown")
            try:
                self._mappings[config_hash] = Mapping(xml, self._overrides, self._names())
            except MappingError as exc:
                raise ConversionFailed(str(exc)) from None
        return self._mappings[config_hash]

    def convert(self, payload: bytes) -> GroundTruth:
        stored = webhooks.decode(payload)
        mapping = self.mapping(stored.label_config_hash)
        data = stored.task.get("data") or {}
        ref = data_row_ref(data)
        if not (ref.id or ref.global_key):
            ref = self._resolve_row(data, object_fields(mapping)) or ref
        report = ConversionReport(announce=False)
        tr = ResultReader(mapping, report).read(stored.annotation.get("result") or [], ref,
                                                size=self._media_size(ref),
                                                task_text=task_text(data, mapping),
                                                task_data=data)
        try:
            lines = to_ndjson(tr, report, rotated_boxes=mapping.overrides.rotated_boxes,
                              include_relations=self._include_relations,
                              features=self._features() if self._features else None)
        except DataRowMissing as exc:
            raise ConversionFailed(f"task {stored.task.get('id')}: {exc}") from None
        for loss in report.examples:
            log.info("annotation %s: not sent: %s", stored.annotation.get("id"), loss)
        self.losses.merge(report)  # a WARNING for the first of each kind and reason only
        from_prediction = stored.annotation.get("parent_prediction") is not None
        regions = [(r.id, ndjson_uuid(r.id),
                    r.id if from_prediction and CUID.fullmatch(r.id) else None)
                   for r in tr.regions]
        regions += [(c.id, ndjson_uuid(c.id), None) for c in tr.classifications if c.id]
        data_row = {"id": tr.data_row.id} if tr.data_row.id else {"globalKey":
                                                                  tr.data_row.global_key}
        return GroundTruth(data_row, lines, regions, report, stored, tr, mapping)


def resolver_from_store(store) -> Callable[[dict, list[str]], DataRowRef | None]:
    """Find a task's data row in the prediction index by its object URL."""
    def resolve(data: dict, fields: list[str]) -> DataRowRef | None:
        url = task_keys(data, fields).url
        if store is None or not url:
            return None
        found = store.data_row("url", url)
        return DataRowRef(id=found[0], global_key=found[1]) if found else None
    return resolve


def media_size_from_store(store) -> Callable[[DataRowRef], tuple[int, int] | None]:
    """The data row's pixel size from the prediction index: the editor writes no
    ``original_width/height`` on video results, so their percentages need it."""
    def size(ref: DataRowRef) -> tuple[int, int] | None:
        for key, value in (("data_row_id", ref.id), ("global_key", ref.global_key)):
            pks = store.find(key, [value]) if store is not None and value else {}
            for _, payload in store.rows(list(pks.values())).values() if pks else ():
                media = orjson.loads(payload).get("media") or {}
                if media.get("width") and media.get("height"):
                    return int(media["width"]), int(media["height"])
        return None
    return size
