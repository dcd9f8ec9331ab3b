"""Masks through the whole bridge: a Labelbox export row with single-instance and composite masks
-> brush predictions (feature id as region id, per-region classifications sharing it, valid for
Label Studio) -> the same result as an annotation -> one Labelbox mask line per region (uuid5 of
the region id, nested classifications, pixel for pixel the same mask). Unreadable and empty masks
are losses naming the feature and the data row."""

import base64
import io
import string

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from labelbridge.labelbox.export import Selection, compact_row, task_regions
from labelbridge.labelbox.masks import MaskSource, resolve_row
from labelbridge.labelbox.ndjson import to_ndjson
from labelbridge.labelstudio.mapping import Mapping
from labelbridge.labelstudio.results import ResultReader, ResultWriter
from labelbridge.model.ids import ndjson_uuid
from labelbridge.model.regions import DataRowRef, Mask
from labelbridge.model.report import ConversionReport

from tests.helpers import ROOT, export_row
from tests.maskgen import composite, single_png

SEG = Mapping((ROOT / "configs" / "segmentation.xml").read_text())
cuids = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=24, max_size=24).map(
    lambda s: "c" + s)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mask_obj(fid, name, ref: dict, composite_mask=False, visibility=None) -> dict:
    obj = {"feature_id": fid, "name": name, "annotation_kind": "ImageSegmentationMask",
           "classifications": []}
    obj["composite_mask" if composite_mask else "mask"] = ref
    if visibility:
        obj["classifications"].append({"feature_id": fid[:-1] + "p", "name": "visibility",
                                       "radio_answer": {"name": visibility, "classifications": []}})
    return obj


def predict(row, base_dir=None, source=None):
    """Export row -> compact (masks read) -> neutral -> Label Studio result."""
    report = ConversionReport()
    compact = orjson.loads(orjson.dumps(compact_row(row, Selection())[1]))
    resolve_row(compact, source or MaskSource(), base_dir)
    compact = orjson.loads(orjson.dumps(compact))   # what the index stores
    tr = task_regions(compact, report)
    return tr, ResultWriter(SEG, report).write(tr), report


def back(tr, result):
    """The prediction's result as Label Studio sends it back in an annotation -> NDJSON."""
    report = ConversionReport()
    annotation = orjson.loads(orjson.dumps(result))
    neutral = ResultReader(SEG, report).read(annotation, tr.data_row)
    return to_ndjson(neutral, report), report


def png_flags(line) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(line["mask"]["png"])))) == 1


@st.composite
def label_images(draw):
    w, h = draw(st.integers(1, 90)), draw(st.integers(1, 90))
    k = draw(st.integers(1, 4))
    labels = np.zeros((h, w), dtype=np.int64)
    for i in range(1, k + 1):
        x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
        labels[y0:draw(st.integers(y0 + 1, h)), x0:draw(st.integers(x0 + 1, w))] = i
    colors = draw(st.lists(st.tuples(*[st.integers(1, 255)] * 3), min_size=k, max_size=k,
                           unique=True))
    return labels, colors


@settings(max_examples=60, deadline=None)
@given(label_images(), st.lists(cuids, min_size=4, max_size=4, unique=True))
def test_composite_instances_of_one_label_round_trip_as_separate_masks(image, fids):
    labels, colors = image
    h, w = labels.shape
    comp = b64(composite(labels, colors))
    objects = [mask_obj(fids[i], "Vehicle", {"png": comp, "color_rgb": list(c)}, True, "partial")
               for i, c in enumerate(colors)]
    tr, result, report = predict(export_row(objects, width=w, height=h))
    present = [i for i in range(len(colors)) if (labels == i + 1).any()]
    assert SEG.interface.validate_prediction({"result": result}, return_errors=True) == []
    brushes = [r for r in result if r["type"] == "brushlabels"]
    assert [r["id"] for r in brushes] == [fids[i] for i in present]
    for r in brushes:
        assert r["value"]["format"] == "rle" and r["value"]["brushlabels"] == ["Vehicle"]
        assert (r["original_width"], r["original_height"]) == (w, h)
    poses = [r for r in result if r["type"] == "choices"]
    assert [r["id"] for r in poses] == [fids[i] for i in present]
    assert all(r["value"]["choices"] == ["partial"] for r in poses)
    assert report.lost == len(colors) - len(present)  # an absent colour: an empty instance
    lines, back_report = back(tr, result)
    assert back_report.lossless
    assert [line["uuid"] for line in lines] == [ndjson_uuid(fids[i]) for i in present]
    for line, i in zip(lines, present):
        assert line["name"] == "Vehicle"
        assert line["classifications"] == [{"name": "visibility", "answer": {"name": "partial"}}]
        assert np.array_equal(png_flags(line), labels == i + 1)


def test_single_instance_file_mask_with_the_export_size(tmp_path):
    flags = np.zeros((30, 40), dtype=bool)
    flags[3:9, 5:30] = True
    (tmp_path / "m.png").write_bytes(single_png(flags, "white"))
    fid = "cfeat00000000000000000001"
    tr, result, report = predict(export_row([mask_obj(fid, "building", {"url": "m.png"})],
                                            width=40, height=30), base_dir=tmp_path)
    assert report.lossless, report.examples
    (brush,) = result
    assert brush["id"] == fid and brush["value"]["brushlabels"] == ["Building"]   # case-insensitive
    assert isinstance(tr.regions[0].shape, Mask)
    (line,), _ = back(tr, result)
    assert np.array_equal(png_flags(line), flags)


def test_unknown_media_size_is_taken_from_the_mask():
    flags = np.ones((5, 7), dtype=bool)
    obj = mask_obj("cfeat00000000000000000001", "Sky", {"png": b64(single_png(flags, "white"))})
    tr, (brush,), report = predict(export_row([obj], width=None))
    assert report.lossless
    assert (brush["original_width"], brush["original_height"]) == (7, 5)


def test_masks_that_cannot_be_read_are_losses_with_feature_and_row(tmp_path):
    objects = [mask_obj("cfeat00000000000000000001", "Vehicle", {"url": "missing.png"}),
               mask_obj("cfeat00000000000000000002", "Building", {"url": "https://lb.invalid/x"}),
               mask_obj("cfeat00000000000000000003", "Sky",
                        {"png": b64(composite(np.ones((480, 640), int), [(1, 2, 3)])),
                         "color_rgb": [9, 9, 9]}, True)]
    from labelbridge.labelbox.mask_fetch import MaskFetcher
    source = MaskSource(MaskFetcher(retries=0, timeout=2))
    tr, result, report = predict(export_row(objects), base_dir=tmp_path, source=source)
    assert result == [] and tr.regions == ()
    losses = {e.region: e for e in report.examples}
    assert set(losses) == {"cfeat00000000000000000001", "cfeat00000000000000000002",
                           "cfeat00000000000000000003"}
    assert "missing.png" in losses["cfeat00000000000000000001"].reason
    assert "lb.invalid" in losses["cfeat00000000000000000002"].reason
    assert "no pixel" in losses["cfeat00000000000000000003"].reason
    assert all(e.kind == "mask" and e.data_row and e.feature and e.field.startswith("objects[")
               for e in losses.values())


def test_unresolved_mask_url_is_a_loss_not_a_fetch():
    obj = mask_obj("cfeat00000000000000000001", "Vehicle", {"url": "https://api.labelbox.com/m"})
    report = ConversionReport()
    tr = task_regions(compact_row(export_row([obj]), Selection())[1], report)
    assert tr.regions == ()
    assert "not fetched" in report.examples[0].reason


def test_empty_and_malformed_brush_annotations_are_losses():
    from labelbridge.labelstudio import brush
    empty = brush.encode(Mask(4, 3, np.array([12], "<u4").tobytes()))
    result = [
        {"id": "r1", "from_name": "mask", "to_name": "image", "type": "brushlabels",
         "original_width": 4, "original_height": 3,
         "value": {"format": "rle", "rle": list(empty), "brushlabels": ["Vehicle"]}},
        {"id": "r2", "from_name": "mask", "to_name": "image", "type": "brushlabels",
         "original_width": 4, "original_height": 3,
         "value": {"format": "rle", "rle": [1, 300], "brushlabels": ["Vehicle"]}},
        {"id": "r3", "from_name": "mask", "to_name": "image", "type": "brushlabels",
         "original_width": 5, "original_height": 3,
         "value": {"format": "rle", "rle": list(empty), "brushlabels": ["Vehicle"]}},
    ]
    report = ConversionReport()
    tr = ResultReader(SEG, report).read(result, DataRowRef(global_key="img-1.jpg"))
    assert tr.regions == ()
    reasons = sorted(e.reason for e in report.examples)
    assert reasons[0].startswith("empty mask")
    assert "not an array of integers 0..255" in reasons
    assert any("holds 48 values, a 5x3 RGBA image has 60" in r for r in reasons)


def test_convert_lb2ls_reads_the_demo_masks_beside_the_export(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from labelbridge.service.cli import app
    for name in ("LABELBOX_API_KEY", "LABELBOX_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "tasks.json"
    done = CliRunner().invoke(app, ["convert", "lb2ls", "--export",
                                    str(ROOT / "configs/demo/labelbox-export.ndjson"),
                                    "--label-config", str(ROOT / "configs/segmentation.xml"),
                                    "--out", str(out)])
    assert done.exit_code == 0, done.output
    (task,) = [t for t in orjson.loads(out.read_bytes())
               if t["data"].get("global_key") == "demo-street-3.jpg"]
    (pred,) = task["predictions"]
    assert [r["value"]["brushlabels"] for r in pred["result"] if r["type"] == "brushlabels"] == [
        ["Sky"], ["Building"], ["Building"], ["Vehicle"]]
