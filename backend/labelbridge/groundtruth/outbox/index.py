"""The annotation index and traceability: annotation -> project, task, data row; which imports
delivered it with which uuids; LS region id <-> uuid <-> Labelbox feature id; the questions
reconciliation and label removal ask.
"""

from __future__ import annotations

import time
from typing import Sequence

import orjson

from labelbridge.groundtruth.outbox.model import loads, ls_annotation_id, parse_timestamp
from labelbridge.groundtruth.outbox.storage import Storage, Tx


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def record_delivered_tx(tx: Tx, annotation_id: int, data_row: dict, import_name: str,
                        uuids: Sequence[str]) -> None:
    now = time.time()
    dr = _json(data_row)
    tx.run("ensure_annotation", annotation_id=annotation_id, now=now)
    tx.run("set_delivered_data_row", annotation_id=annotation_id, data_row=dr, now=now)
    tx.run("record_annotation_import", annotation_id=annotation_id, import_name=import_name,
           now=now, uuids=_json(list(uuids)))
    tx.many("record_region_data_row", [{"annotation_id": annotation_id, "uuid": u,
                                        "data_row": dr, "now": now} for u in uuids])


def record_region_ids_tx(tx: Tx, annotation_id: int,
                         rows: Sequence[tuple[str, str, str | None]]) -> None:
    now = time.time()
    got = tx.one("annotation_data_row", annotation_id=annotation_id)
    dr = got["data_row"] if got else None
    tx.many("record_region_ids", [{"annotation_id": annotation_id, "uuid": uuid,
                                   "ls_region_id": region, "data_row": dr,
                                   "lb_feature_id": feature, "now": now}
                                  for region, uuid, feature in rows])


class AnnotationIndex:
    """Delivery records and index queries of ``Outbox``."""
    _db: Storage

    # ----- delivery records ----------------------------------------------------------------
    def record_delivered(self, annotation_id: int, data_row: dict, import_name: str,
                         uuids: list[str]) -> None:
        """What the worker delivered for an annotation (for deletes and traceability)."""
        with self._db.transaction() as tx:
            record_delivered_tx(tx, annotation_id, data_row, import_name, uuids)

    def record_region_ids(self, annotation_id: int,
                          rows: Sequence[tuple[str, str, str | None]]) -> None:
        """(ls_region_id, uuid, lb_feature_id) of an annotation's regions; a None feature id
        keeps one already known."""
        with self._db.transaction() as tx:
            record_region_ids_tx(tx, annotation_id, rows)

    def set_label_ids(self, annotation_id: int, label_ids: list[str]) -> None:
        with self._db.transaction() as tx:
            now = time.time()
            tx.run("ensure_annotation", annotation_id=annotation_id, now=now)
            tx.run("set_label_ids", annotation_id=annotation_id, label_ids=_json(list(label_ids)),
                   now=now)

    def delivered_info(self, annotation_id: int) -> dict | None:
        """{"data_row", "imports", "label_ids", "uuids" (of the latest import), "all_uuids",
        "regions", "delivered_at"} or None when nothing of it was ever delivered."""
        with self._db.snapshot() as tx:
            row = tx.one("delivered_annotation", annotation_id=annotation_id)
            imports = tx.all("imports_of", annotation_id=annotation_id)
            regions = tx.all("regions_of", annotation_id=annotation_id)
        if row is None or (row["data_row"] is None and row["delivered_at"] is None
                           and not imports):
            return None
        return {
            "data_row": loads(row["data_row"]),
            "imports": [r["import_name"] for r in imports],
            "label_ids": loads(row["label_ids"]) or [],
            "uuids": loads(imports[-1]["uuids"]) if imports else [],
            "all_uuids": [r["uuid"] for r in regions],
            "regions": [{"ls_region_id": r["ls_region_id"], "uuid": r["uuid"],
                         "lb_feature_id": r["lb_feature_id"]} for r in regions],
            "delivered_at": row["delivered_at"],
        }

    def import_windows(self, annotation_id: int) -> list[tuple[float, float]]:
        """(start, end) wall-clock windows of the imports that delivered this annotation:
        from the moment its batch's import name was stored (just before Labelbox was called)
        to the moment the worker recorded the delivery. Oldest first."""
        return [(min(r["start"], r["end"]), r["end"])
                for r in self._db.all("import_windows", annotation_id=annotation_id)]

    def sole_delivered_on_task(self, annotation_id: int) -> bool:
        """True when this annotation reached Labelbox and no other annotation of its task did
        (so every label our imports put on that data row is its own)."""
        row = self._db.one("annotation_row", annotation_id=annotation_id)
        if row is None or row["task_id"] is None or row["delivered_at"] is None:
            return False
        return self._db.one("other_delivered_on_task", task_id=row["task_id"],
                            annotation_id=annotation_id) is None

    # ----- reconciliation ------------------------------------------------------------------
    def has_seen(self, annotation_id: int, updated_at: str,
                 incarnation: str | None = None) -> bool:
        """Whether this version of the annotation (of this incarnation, when its creation time
        is given) was already received (any outcome). The newest versions stay known after
        retention pruned their events."""
        rows = self._db.all("incarnations_of", ls_id=annotation_id)
        key = rows[-1]["key"] if rows else annotation_id
        if incarnation is not None and rows:
            created = parse_timestamp(incarnation)
            match = [r["key"] for r in rows if r["created_us"] in (created, None)]
            if not match:
                return False   # an incarnation never seen: a reused id
            key = match[0]
        us = parse_timestamp(updated_at)
        if self._db.one("event_with_key", key=f"u:{key}:{us}") is not None:
            return True
        versions = self._db.one("annotation_versions", annotation_id=key)
        return versions is not None and us in (versions["latest_us"], versions["seen_us"])

    def is_deleted(self, annotation_id: int) -> bool:
        row = self._db.one("annotation_row", annotation_id=annotation_id)
        return bool(row and row["deleted_at"] is not None)

    def known_annotations(self, project_id: int) -> dict[int, str]:
        """annotation_id -> newest updated_at seen, for annotations of the project not deleted."""
        return {r["annotation_id"]: r["seen_updated_at"]
                for r in self._db.all("known_annotations", project_id=project_id)}

    def projects(self) -> list[int]:
        """Projects the annotation index knows (what reconciliation walks by default)."""
        return [r["project_id"] for r in self._db.all("projects")]

    def task_annotations(self, task_id: int, project_id: int | None = None) -> list[int]:
        """Label Studio ids of a task's annotations seen and not deleted (to notice deletions
        Label Studio never sent)."""
        return sorted({ls_annotation_id(r["annotation_id"]) for r in self._db.all(
            "task_annotations", task_id=task_id, project_id=project_id)})

    def live_annotations(self, project_id: int) -> list[tuple[int, int | None]]:
        """(Label Studio annotation id, task_id) of the project's annotations not deleted."""
        return [(ls_annotation_id(r["annotation_id"]), r["task_id"])
                for r in self._db.all("live_annotations", project_id=project_id)]

    def annotation_task(self, annotation_id: int) -> tuple[int | None, int | None] | None:
        row = self._db.one("annotation_row", annotation_id=annotation_id)
        if row is None or (row["project_id"] is None and row["task_id"] is None):
            return None
        return (row["project_id"], row["task_id"])
