"""The edit report's store (SQLite): per delivered annotation, what happened to each region of
the prediction it was made from (``edits.compare``), and the figures drawn from it.

The prediction an annotation is compared with is kept with its first comparison, so an update
delivered later is compared with the same prediction even after a newer model run is served.
A second delivery of the same annotation replaces its regions (an emptied one: all deleted);
a deleted annotation leaves the report. ``loop`` tracks closing the loop in Labelbox
(``close_loop.py``): NULL when off, then ``pending``, ``done`` or the failure.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from labelbridge.groundtruth.edits import OUTCOMES, RegionEdit

SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
  annotation_id INTEGER PRIMARY KEY, task_id INTEGER, project_id INTEGER, data_row_id TEXT,
  model_version TEXT NOT NULL, run_id TEXT, served BLOB NOT NULL, recorded_at REAL NOT NULL,
  loop TEXT
);
CREATE TABLE IF NOT EXISTS regions (
  annotation_id INTEGER NOT NULL, region_id TEXT NOT NULL, label TEXT NOT NULL,
  kind TEXT NOT NULL, accepted INTEGER NOT NULL, moved INTEGER NOT NULL,
  relabelled INTEGER NOT NULL, attributes_changed INTEGER NOT NULL, deleted INTEGER NOT NULL,
  added INTEGER NOT NULL, iou REAL, PRIMARY KEY (annotation_id, region_id)
);
CREATE INDEX IF NOT EXISTS annotations_loop ON annotations(loop);
"""
COUNTS = ", ".join(f"sum({o})" for o in OUTCOMES)


@dataclass(frozen=True)
class Served:
    """The prediction an annotation was compared with."""
    model_version: str
    run_id: str | None
    payload: bytes


@dataclass
class LabelFigures:
    label: str
    counts: dict[str, int]
    mean_iou_moved: float | None

    @property
    def acceptance_rate(self) -> float | None:
        n = self.counts["predicted"]
        return self.counts["accepted"] / n if n else None

    def as_dict(self) -> dict:
        return {"label": self.label, "predicted": self.counts["predicted"],
                **{o: self.counts[o] for o in OUTCOMES},
                "acceptance_rate": self.acceptance_rate, "mean_iou_moved": self.mean_iou_moved}


@dataclass
class EditSummary:
    annotations: int
    labels: list[LabelFigures] = field(default_factory=list)
    total: LabelFigures | None = None


class EditStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                     timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ----- recording ----------------------------------------------------------------------
    def served(self, annotation_id: int) -> Served | None:
        with self._lock:
            row = self._conn.execute("SELECT model_version, run_id, served FROM annotations "
                                     "WHERE annotation_id = ?", (annotation_id,)).fetchone()
        return Served(row[0], row[1], row[2]) if row else None

    def record(self, annotation_id: int, task_id: int | None, project_id: int | None,
               data_row_id: str | None, served: Served, edits: Iterable[RegionEdit],
               loop: bool = False) -> None:
        rows = [(annotation_id, e.region_id, e.label, e.kind,
                 *(int(o in e.outcomes) for o in OUTCOMES), e.iou) for e in edits]
        with self._lock:
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO annotations(annotation_id, task_id, project_id, data_row_id, "
                    "model_version, run_id, served, recorded_at, loop) VALUES (?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(annotation_id) DO UPDATE SET recorded_at = excluded.recorded_at, "
                    "loop = excluded.loop",
                    (annotation_id, task_id, project_id, data_row_id, served.model_version,
                     served.run_id, served.payload, time.time(), "pending" if loop else None))
                db.execute("DELETE FROM regions WHERE annotation_id = ?", (annotation_id,))
                db.executemany("INSERT INTO regions VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def forget(self, annotation_ids: Iterable[int]) -> None:
        """Deleted annotations leave the report (their figures, the prediction kept for them,
        their pending loop)."""
        ids = [(a,) for a in annotation_ids]
        with self._lock:
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM regions WHERE annotation_id = ?", ids)
                db.executemany("DELETE FROM annotations WHERE annotation_id = ?", ids)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # ----- closing the loop ---------------------------------------------------------------
    def pending_loop(self, limit: int = 500) -> list[tuple[int, str | None, str | None]]:
        """(annotation id, run id, data row id) of annotations not yet sent to their run."""
        with self._lock:
            return self._conn.execute(
                "SELECT annotation_id, run_id, data_row_id FROM annotations WHERE loop = "
                "'pending' ORDER BY recorded_at LIMIT ?", (limit,)).fetchall()

    def set_loop(self, annotation_ids: Iterable[int], state: str) -> None:
        with self._lock:
            self._conn.executemany("UPDATE annotations SET loop = ? WHERE annotation_id = ?",
                                   [(state, a) for a in annotation_ids])

    def row_figures(self, annotation_ids: Iterable[int]) -> dict[str, dict]:
        """data row id -> outcome counts and mean IoU of its moved regions."""
        ids = list(annotation_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT a.data_row_id, {COUNTS}, avg(CASE WHEN moved THEN iou END) "
                f"FROM regions r JOIN annotations a USING (annotation_id) "
                f"WHERE annotation_id IN ({marks}) GROUP BY a.data_row_id", ids).fetchall()
        return {r[0]: {**dict(zip(OUTCOMES, r[1:7])), "mean_iou_moved": r[7]} for r in rows}

    # ----- the report ---------------------------------------------------------------------
    def summary(self, model_version: str | None = None) -> EditSummary:
        where, args = ("WHERE a.model_version = ?", (model_version,)) if model_version else ("", ())
        with self._lock:
            n = self._conn.execute(f"SELECT count(*) FROM annotations a {where}", args
                                   ).fetchone()[0]
            rows = self._conn.execute(
                f"SELECT r.label, {COUNTS}, sum(1 - r.added), avg(CASE WHEN r.moved THEN r.iou "
                f"END) FROM regions r JOIN annotations a USING (annotation_id) {where} "
                f"GROUP BY r.label ORDER BY r.label", args).fetchall()
            total = self._conn.execute(
                f"SELECT {COUNTS}, sum(1 - r.added), avg(CASE WHEN r.moved THEN r.iou END) "
                f"FROM regions r JOIN annotations a USING (annotation_id) {where}", args
            ).fetchone()
        labels = [_figures(r[0], r[1:]) for r in rows]
        return EditSummary(n, labels, _figures("(all)", total))

    def versions(self) -> list[str]:
        with self._lock:
            return [v for (v,) in self._conn.execute(
                "SELECT model_version FROM annotations GROUP BY model_version "
                "ORDER BY min(recorded_at)")]


def _figures(label: str, row) -> LabelFigures:
    counts = {o: int(v or 0) for o, v in zip(OUTCOMES, row)}
    counts["predicted"] = int(row[len(OUTCOMES)] or 0)
    iou = row[len(OUTCOMES) + 1]
    return LabelFigures(label, counts, round(iou, 6) if iou is not None else None)


def totals(path: Path) -> dict:
    """The report's totals, for ``/status``: annotations, outcome counts, acceptance rate and
    mean IoU of moved regions. Empty when nothing was recorded yet."""
    if not Path(path).exists():
        return {}
    store = EditStore(path)
    try:
        s = store.summary()
    finally:
        store.close()
    if s.total is None:
        return {}
    figures = s.total.as_dict()
    figures.pop("label")
    return {"annotations": s.annotations, **figures}
