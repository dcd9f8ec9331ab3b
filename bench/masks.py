"""Mask benchmark: conversion throughput both ways against decoding the same PNGs, and the
memory of an index build over masks.

    python bench/masks.py [--quick] [--rows 10000]

1. Throughput in megapixels per second at 640x480 and 4032x3024, on random filled polygons and
   ellipses (a few per image, as people draw them):
   * Labelbox -> Label Studio, what the bridge does per mask: the PNG decoded and split by
     colour (single-instance PNGs, and composites of 3 instances), carried through the index
     payload, encoded as brush RLE and written as the ``brushlabels`` result JSON;
   * Label Studio -> Labelbox: the brush RLE decoded and written as a mask import line
     (``lb.Mask`` -> ``NDJsonConverter``, which encodes the 0/1 PNG);
   against the floor: decoding the same Labelbox PNGs alone (Pillow, to a numpy array).
   Floor and conversion alternate and keep their best run. Target: both >= 0.25x the floor.
2. The brush codec on a noisy 640x480 mask against label-studio-sdk's (pure Python) codec.
3. Index build over a synthetic export of ``--rows`` data rows, each with one 12-MP composite
   mask of 3 instances (all rows share one PNG file, as the brief allows): peak RSS of the
   indexing process and its children. Target < 300 MB.

Prints a table and writes ``bench/out/masks.json`` (``masks-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from bench.common import log, verdict  # noqa: E402
from labelbridge.labelbox import mask_payload, masks  # noqa: E402
from labelbridge.labelstudio import brush  # noqa: E402

OUT = ROOT / "bench" / "out"
TARGETS = {"ratio": 0.25, "index_peak_rss_mb": 300}
SIZES = {"640x480": (640, 480), "4032x3024": (4032, 3024)}
COLORS = [(123, 103, 152), (10, 200, 30), (250, 40, 40)]


# ----- inputs --------------------------------------------------------------------------------

def shapes(rng: np.random.Generator, w: int, h: int, n: int) -> list[Image.Image]:
    """``n`` "L" images, each one filled star polygon or ellipse of 5-30 % of the image."""
    out = []
    for _ in range(n):
        im = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(im)
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        r = rng.uniform(0.15, 0.3) * min(w, h)
        if rng.random() < 0.5:
            k = int(rng.integers(5, 12))
            angles = np.sort(rng.uniform(0, 2 * np.pi, k))
            radii = r * rng.uniform(0.4, 1.0, k)
            draw.polygon([(cx + a * np.cos(t), cy + a * np.sin(t)) for t, a in zip(angles, radii)],
                         fill=255)
        else:
            rx, ry = r * rng.uniform(0.5, 1.2), r * rng.uniform(0.5, 1.2)
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        out.append(im)
    return out


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def composite_png(layers: list[Image.Image]) -> bytes:
    rgb = Image.new("RGB", layers[0].size, (0, 0, 0))
    for layer, color in zip(layers, COLORS):
        rgb.paste(color, mask=layer)
    return png(rgb)


# ----- one mask, both ways ------------------------------------------------------------------

def lb_to_ls(data: bytes, colors: list | None) -> int:
    """What the bridge does for one PNG: decode, split, carry through the index payload,
    encode and write the results. Returns the JSON size (so nothing is optimized away)."""
    runs = masks.read_png(data)
    size = 0
    for color in colors or [None]:
        payload = orjson.dumps(mask_payload.to_payload(runs.instance(color)))   # index build
        mask = mask_payload.from_payload(orjson.loads(payload))                 # prepare
        result = {"id": "cfeature0000000000000001", "from_name": "tag", "to_name": "image",
                  "type": "brushlabels", "original_width": mask.width,
                  "original_height": mask.height, "image_rotation": 0,
                  "value": {"format": "rle", "rle": list(brush.encode(mask)),
                            "brushlabels": ["Cat"]}}
        size += len(orjson.dumps(result))
    return size


def ls_to_lb(rle: bytes, w: int, h: int) -> int:
    import labelbox.types as lb  # imported here: the index child measures the indexer alone
    from labelbox.data.serialization import NDJsonConverter
    mask = brush.decode(rle, w, h)
    ann = lb.ObjectAnnotation(name="Cat", value=masks.to_labelbox(mask),
                              extra={"uuid": "8d5fd2b4-2f1b-4d0c-9c3a-2d3b0a9e6b11"})
    (line,) = NDJsonConverter.serialize([lb.Label(data={"global_key": "k"}, annotations=[ann])])
    return len(orjson.dumps(line))


def decode_floor(data: bytes) -> int:
    return np.asarray(Image.open(io.BytesIO(data))).size


def best_of(runs: int, *jobs: Callable[[], None]) -> list[float]:
    """Best time of each job, the jobs alternating run by run."""
    best = [float("inf")] * len(jobs)
    for _ in range(runs):
        for i, job in enumerate(jobs):
            t0 = time.perf_counter()
            job()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def bench_throughput(count: dict[str, int], runs: int) -> list[dict]:
    rng = np.random.default_rng(14)
    rows = []
    for label, (w, h) in SIZES.items():
        n = count[label]
        layers = shapes(rng, w, h, 3 * n)
        singles = [png(im) for im in layers]
        composites = [composite_png(layers[3 * i:3 * i + 3]) for i in range(n)]
        rles = [brush.encode(masks.read_png(p).instance(None)) for p in singles]
        mp = w * h / 1e6
        cases = [
            ("Labelbox -> LS, single-instance PNGs", singles, len(singles),
             lambda: [lb_to_ls(p, None) for p in singles]),
            ("Labelbox -> LS, composite PNGs (3 instances)", composites, len(composites),
             lambda: [lb_to_ls(p, COLORS) for p in composites]),
            ("LS -> Labelbox", singles, len(rles), lambda: [ls_to_lb(r, w, h) for r in rles]),
        ]
        for name, pngs, masks_n, convert in cases:
            floor_t, conv_t = best_of(runs, lambda: [decode_floor(p) for p in pngs], convert)
            pixels = len(pngs) * mp
            row = {"case": name, "size": label, "pngs": len(pngs), "masks": masks_n,
                   "mp_per_s": round(pixels / conv_t, 1),
                   "floor_mp_per_s": round(pixels / floor_t, 1),
                   "ms_per_png": round(conv_t / len(pngs) * 1e3, 2),
                   "floor_ms_per_png": round(floor_t / len(pngs) * 1e3, 2)}
            row["ratio"] = round(floor_t / conv_t, 3)
            rows.append(row)
            log(f"{label} {name}: {row['mp_per_s']} MP/s, floor {row['floor_mp_per_s']} MP/s, "
                f"ratio {row['ratio']}")
    return rows


def bench_codec(runs: int) -> dict:
    from label_studio_sdk.converter import brush as sdk
    flags = np.random.default_rng(1).random((480, 640)) < 0.5
    u8 = flags.astype(np.uint8) * 255
    mask = masks.read_png(png(Image.fromarray(u8))).instance(None)
    rle = brush.encode(mask)
    assert rle == bytes(sdk.mask2rle(u8)), "encoder differs from the SDK's"
    ours_enc, ours_dec = best_of(runs, lambda: brush.encode(mask), lambda: brush.decode(rle, 640, 480))
    sdk_enc, sdk_dec = best_of(1, lambda: sdk.mask2rle(u8), lambda: sdk.decode_rle(rle))
    return {"rle_bytes": len(rle), "encode_ms": round(ours_enc * 1e3, 2),
            "decode_ms": round(ours_dec * 1e3, 2), "sdk_encode_ms": round(sdk_enc * 1e3, 1),
            "sdk_decode_ms": round(sdk_dec * 1e3, 1)}


# ----- index build over masks -------------------------------------------------------------------

def write_index_export(folder: Path, rows: int) -> Path:
    """``rows`` data rows, each with one 12-MP composite of 3 instances: one PNG file, shared."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = SIZES["4032x3024"]
    (folder / "composite.png").write_bytes(
        composite_png(shapes(np.random.default_rng(3), w, h, 3)))
    path = folder / "masks-export.ndjson"
    with open(path, "wb") as fh:
        for i in range(rows):
            objects = [{"feature_id": f"cf{i:015d}{k:08d}", "name": "Vehicle",
                        "annotation_kind": "ImageSegmentationMask", "classifications": [],
                        "composite_mask": {"url": "composite.png", "color_rgb": list(color)}}
                       for k, color in enumerate(COLORS)]
            row = {"data_row": {"id": f"cdr{i:022d}", "global_key": f"mask-{i}.jpg",
                                "row_data": f"https://example.invalid/mask-{i}.jpg"},
                   "media_attributes": {"width": w, "height": h, "mime_type": "image/jpeg"},
                   "experiments": {"cmodel00000000000000000001": {"runs": {
                       "crun000000000000000000001": {"predictions": [{"annotations": {
                           "objects": objects, "classifications": [], "relationships": []}}]}}}}}
            fh.write(orjson.dumps(row) + b"\n")
    return path


def index_child(export: str, index: str) -> None:
    from labelbridge.labelbox.export import Selection
    from labelbridge.predictions.indexer import index_export
    started = time.perf_counter()
    result = index_export(Path(export), Path(index), Selection(), masks=masks.MaskSource())
    print(json.dumps({"rows": result.rows, "seconds": time.perf_counter() - started}))


def bench_index(rows: int) -> dict:
    """The build runs in a child process; its peak RSS (with any worker processes) is sampled
    from /proc (not ``ru_maxrss``, which counts this process's pages the child had until exec)."""
    from bench.predict import run_child
    folder = OUT / "masks-index"
    export = write_index_export(folder, rows)
    for f in folder.glob("index.sqlite3*"):
        f.unlink()
    answer, peak = run_child(["index", str(export), str(folder / "index.sqlite3")],
                             script=Path(__file__).resolve(), kernel_peak=False)
    log(f"index build: {answer['rows']} rows in {answer['seconds']:.1f} s, peak RSS {peak:.0f} MB")
    return {**answer, "peak_rss_mb": round(peak, 1)}


# ----- report --------------------------------------------------------------------------------

def table(rows: list[dict], codec: dict, index: dict | None) -> str:
    lines = [f"{'case':<46}{'size':>10}{'MP/s':>9}{'floor':>9}{'ratio':>7}  target >= "
             f"{TARGETS['ratio']}"]
    for r in rows:
        lines.append(f"{r['case']:<46}{r['size']:>10}{r['mp_per_s']:>9.1f}"
                     f"{r['floor_mp_per_s']:>9.1f}{r['ratio']:>7.2f}  "
                     f"{verdict(r['ratio'] >= TARGETS['ratio'])}")
    lines.append(f"brush codec, noisy 640x480 ({codec['rle_bytes']} bytes of RLE): encode "
                 f"{codec['encode_ms']} ms (SDK {codec['sdk_encode_ms']} ms), decode "
                 f"{codec['decode_ms']} ms (SDK {codec['sdk_decode_ms']} ms)")
    if index:
        lines.append(f"index build, {index['rows']} rows x one 12-MP composite: "
                     f"{index['seconds']:.1f} s, peak RSS {index['peak_rss_mb']:.0f} MB  "
                     f"< {TARGETS['index_peak_rss_mb']} MB: "
                     f"{verdict(index['peak_rss_mb'] < TARGETS['index_peak_rss_mb'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer masks, fewer rows")
    ap.add_argument("--rows", type=int, default=None, help="rows of the index export (10000)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        index_child(*args.child[1:])
        return 0
    count = {"640x480": 10, "4032x3024": 1} if args.quick else {"640x480": 40, "4032x3024": 3}
    runs = 3 if args.quick else 5
    rows = bench_throughput(count, runs)
    codec = bench_codec(runs)
    index = bench_index(args.rows or (1000 if args.quick else 10_000))
    out = args.out or OUT / ("masks-quick.json" if args.quick else "masks.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"throughput": rows, "codec": codec, "index": index}, indent=2))
    print(table(rows, codec, index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
