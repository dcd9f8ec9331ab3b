"""A deterministic synthetic Labelbox export-v2 (model run with predictions), for the benches.

Every row looks like what ``export_v2(params={"predictions": True})`` writes for an image
model run: data row details, media attributes, one model with one run holding one prediction
of ``objects`` regions (boxes mostly, some polygons and points) carrying nested
classifications three deep (radio -> checklist -> radio, plus a free-text note), and global
classifications three deep (weather -> rain_intensity -> wet). The feature names are those of
``tests/helpers.IMAGE_CONFIG``, so every region converts.

Ids are cuid-shaped (25 chars) and derived from the row number, so a row's global key and data
row id can be recomputed without reading the file (see ``global_key``).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import orjson

SEED = 20240611
MODEL_ID = "cbenchmodel00000000000001"
RUN_ID = "cbenchrun0000000000000001"
DATASET_ID = "cbenchdataset000000000001"
URL_PREFIX = "https://storage.example.com/labelbridge-bench/"
FORMAT_VERSION = 1  # bump when the row shape changes, so cached exports are regenerated

# feature schema ids are per feature (the same in every row), as in a real ontology
_SCHEMA = {name: f"cschema{n:018d}" for n, name in enumerate(
    ["Car", "Person", "Bicycle", "road", "nose", "occluded", "yes", "no", "attributes", "parked",
     "blurred", "cause", "motion", "focus", "note", "weather", "sunny", "rainy",
     "rain_intensity", "light", "heavy", "wet", "puddles", "flooded"])}
_BOX_NAMES = ("Car", "Person", "Bicycle")
_SIZES = ((1920, 1080), (1280, 720), (2560, 1707), (640, 480))


def global_key(i: int) -> str:
    return f"bench/img-{i:08d}.jpg"


def data_row_id(i: int) -> str:
    return f"cdr{i:022d}"


def row_data(i: int) -> str:
    return URL_PREFIX + global_key(i).split("/", 1)[1]


class _Ids:
    """cuid-shaped feature ids, unique in the export: 'c' + row (10) + serial (14)."""

    def __init__(self, row: int) -> None:
        self.prefix = f"c{row:010d}"
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}{self.n:014d}"


def _feature(ids: _Ids, name: str, **rest) -> dict:
    return {"feature_id": ids(), "feature_schema_id": _SCHEMA[name], "name": name,
            "value": name.lower(), **rest}


def _radio(ids: _Ids, name: str, answer: str, nested: list[dict]) -> dict:
    return _feature(ids, name, radio_answer=_feature(ids, answer, classifications=nested))


def _object_classifications(rnd: random.Random, ids: _Ids) -> list[dict]:
    occluded = rnd.random() < 0.6
    nested = []
    if occluded:
        answers = [a for a in ("parked", "blurred") if rnd.random() < 0.6] or ["blurred"]
        checklist = _feature(ids, "attributes", checklist_answers=[
            _feature(ids, a, classifications=[
                _radio(ids, "cause", rnd.choice(("motion", "focus")), [])] if a == "blurred"
                else []) for a in answers])
        nested.append(checklist)
    out = [_radio(ids, "occluded", "yes" if occluded else "no", nested)]
    if rnd.random() < 0.3:
        out.append(_feature(ids, "note", text_answer={
            "content": rnd.choice(("partly hidden", "dented", "reflection", "far away"))}))
    return out


def _object(rnd: random.Random, ids: _Ids, width: int, height: int) -> dict:
    kind = rnd.random()
    common = {"classifications": _object_classifications(rnd, ids),
              "confidence": round(rnd.uniform(0.3, 1.0), 4)}
    if kind < 0.75:
        w, h = rnd.uniform(10, width / 4), rnd.uniform(10, height / 4)
        left, top = rnd.uniform(0, width - w), rnd.uniform(0, height - h)
        return {**_feature(ids, rnd.choice(_BOX_NAMES), annotation_kind="ImageBoundingBox"),
                **common, "bounding_box": {"top": round(top, 2), "left": round(left, 2),
                                           "height": round(h, 2), "width": round(w, 2)}}
    if kind < 0.92:
        n = rnd.randint(4, 10)
        pts = [{"x": round(rnd.uniform(0, width), 2), "y": round(rnd.uniform(0, height), 2)}
               for _ in range(n)]
        return {**_feature(ids, "road", annotation_kind="ImagePolygon"), **common,
                "polygon": pts + [dict(pts[0])]}  # Labelbox polygons are closed
    return {**_feature(ids, "nose", annotation_kind="ImagePoint"), **common,
            "point": {"x": round(rnd.uniform(0, width), 2), "y": round(rnd.uniform(0, height), 2)}}


def _global_classifications(rnd: random.Random, ids: _Ids) -> list[dict]:
    if rnd.random() < 0.5:
        return [_radio(ids, "weather", "sunny", [])]
    heavy = rnd.random() < 0.5
    wet = [_radio(ids, "wet", rnd.choice(("puddles", "flooded")), [])] if heavy else []
    return [_radio(ids, "weather", "rainy",
                   [_radio(ids, "rain_intensity", "heavy" if heavy else "light", wet)])]


def make_row(i: int, regions: int, rnd: random.Random) -> dict:
    ids = _Ids(i)
    width, height = _SIZES[i % len(_SIZES)]
    created = f"2024-05-{1 + i % 28:02d}T10:{i % 60:02d}:00.000+00:00"
    return {
        "data_row": {"id": data_row_id(i), "global_key": global_key(i),
                     "external_id": global_key(i).split("/", 1)[1], "row_data": row_data(i),
                     "details": {"dataset_id": DATASET_ID, "dataset_name": "labelbridge-bench",
                                 "created_at": created, "updated_at": created,
                                 "last_activity_at": created, "created_by": "bench@example.com"}},
        "media_attributes": {"height": height, "width": width, "mime_type": "image/jpeg",
                             "exif_rotation": "1"},
        "attachments": [],
        "metadata_fields": [],
        "experiments": {MODEL_ID: {"name": "bench-model", "runs": {RUN_ID: {
            "name": "bench-run", "run_data_row_id": f"crdr{i:021d}", "labels": [],
            "predictions": [{
                "label_kind": "Default", "version": "1.0.0", "id": f"cpred{i:020d}",
                "annotations": {
                    "objects": [_object(rnd, ids, width, height) for _ in range(regions)],
                    "classifications": _global_classifications(rnd, ids),
                    "relationships": []}}]}}}},
    }


def ensure_export(path: Path, rows: int, regions: int = 10, seed: int = SEED,
                  log=print) -> bool:
    """Write the export at ``path`` unless it exists with the same parameters. True if written."""
    params = {"rows": rows, "regions": regions, "seed": seed, "format": FORMAT_VERSION}
    sidecar = path.with_name(path.name + ".params.json")
    if path.exists() and sidecar.exists():
        try:
            done = json.loads(sidecar.read_text())
        except ValueError:
            done = None
        if done == {**params, "size": path.stat().st_size}:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    rnd = random.Random(seed)
    with open(tmp, "wb", buffering=1 << 20) as fh:
        for i in range(rows):
            fh.write(orjson.dumps(make_row(i, regions, rnd)) + b"\n")
            if log and rows >= 20_000 and (i + 1) % 20_000 == 0:
                log(f"  generated {i + 1:,}/{rows:,} rows")
    os.replace(tmp, path)
    sidecar.write_text(json.dumps({**params, "size": path.stat().st_size}))
    return True
