"""Masks in the prediction index: read while the index is built, by worker processes too (the
same index as one process builds), kept as pixels in the payload so that preparing and
answering ``/predict`` never fetch; a build without the key differs in its fingerprint, so
adding the key rebuilds the index."""

import numpy as np
import orjson

from labelbridge.labelbox.export import Selection
from labelbridge.labelbox.mask_fetch import MaskFetcher
from labelbridge.labelbox.mask_payload import from_payload
from labelbridge.labelbox.masks import MaskSource
from labelbridge.predictions.indexer import export_fingerprint, index_export
from labelbridge.predictions.store import PredictionStore

from tests.helpers import export_row
from tests.maskgen import composite, to_mask

LABELS = np.zeros((30, 40), dtype=np.int64)
LABELS[2:10, 3:30], LABELS[12:28, 5:15] = 1, 2
COLORS = [(200, 10, 10), (10, 200, 10)]


def write_export(folder, rows=60):
    folder.mkdir()
    (folder / "c.png").write_bytes(composite(LABELS, COLORS))
    lines = []
    for i in range(rows):
        objects = [{"feature_id": f"cf{i:015d}{k:08d}", "name": "Building",
                    "annotation_kind": "ImageSegmentationMask",
                    "composite_mask": {"url": "c.png", "color_rgb": list(COLORS[k])}}
                   for k in range(2)]
        lines.append(orjson.dumps(export_row(objects, width=40, height=30,
                                             data_row_id=f"cdr{i:022d}",
                                             global_key=f"g{i}.jpg")) + b"\n")
    (folder / "export.ndjson").write_bytes(b"".join(lines))
    return folder / "export.ndjson"


def payload_masks(index):
    """The masks of every row, in export order (``iter_pks``, as preparing reads them)."""
    store = PredictionStore(index)
    try:
        pks = [pk for batch in store.iter_pks() for pk in batch]
        rows = store.rows(pks)
        return [[from_payload(o.get("mask") or o["composite_mask"]) for o in
                 orjson.loads(rows[pk][1])["annotations"]["objects"]] for pk in pks]
    finally:
        store.close()


def test_worker_processes_read_the_masks_as_one_process_does(tmp_path):
    export = write_export(tmp_path / "export")
    index_export(export, tmp_path / "one.sqlite3", Selection(), workers=1, masks=MaskSource())
    index_export(export, tmp_path / "many.sqlite3", Selection(), workers=2, chunk_bytes=4_000,
                 masks=MaskSource())
    one, many = payload_masks(tmp_path / "one.sqlite3"), payload_masks(tmp_path / "many.sqlite3")
    assert one == many and len(one) == 60   # the first row too (pk 0)
    assert one[0] == [to_mask(LABELS == 1), to_mask(LABELS == 2)]


def test_without_a_mask_source_the_masks_stay_references(tmp_path):
    export = write_export(tmp_path / "export", rows=2)
    index_export(export, tmp_path / "ix.sqlite3", Selection(), workers=1)
    assert all("not fetched" in m for row in payload_masks(tmp_path / "ix.sqlite3") for m in row)


def test_the_fingerprint_says_whether_masks_were_fetched_with_the_key(tmp_path):
    export = write_export(tmp_path / "export", rows=1)
    with_key = MaskSource(MaskFetcher({"Authorization": "Bearer secret-key"}))
    prints = {export_fingerprint(export, Selection(), m)
              for m in (None, MaskSource(), with_key)}
    assert len(prints) == 3
    assert export_fingerprint(export, Selection(), with_key) == export_fingerprint(
        export, Selection(), MaskSource(MaskFetcher({"Authorization": "Bearer other-key"})))
    assert "secret" not in with_key.describe()


def test_reading_exports_stays_light_without_masks_to_fetch():
    """Index workers and export readers import neither Pillow, numpy nor labelbox.types for
    masks (together ~1 s and ~75 MB a process) unless they read mask PNGs."""
    import subprocess
    import sys
    code = ("import sys, labelbridge.labelbox.export, labelbridge.predictions.indexer; "
            "print(sorted(m for m in ('PIL.Image', 'numpy', 'labelbox.types') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
