"""Video conversion rate, keyframes per second, both directions, against orjson parsing.

    python bench/video.py [--frames 10000] [--tracks 50] [--every 10] [--repeat 5] [--quick]

A synthetic export row of one video (``--frames`` frames, ``--tracks`` tracks, a keyframe
every ``--every`` frames, each track cut into segments with gaps, a nested classification on
every keyframe, frame classifications) is converted:

* Labelbox -> Label Studio: parse the row, read its tracks, write the ``videorectangle``
  results (what ``/predict`` and ``convert lb2ls`` do for a video row);
* Label Studio -> Labelbox: parse the stored result list (as a webhook body holds it), read
  the tracks back, write the NDJSON lines (what delivery does for a video annotation).

The floor is ``orjson.loads`` of the same export row, in the same run; figures are the best of
``--repeat`` rounds, each round timing the floor and both directions in turn.
Prints a table and writes ``bench/out/video.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Callable

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import log  # noqa: E402
from labelbridge.labelbox.export import Selection, compact_row, task_regions  # noqa: E402
from labelbridge.labelbox.ndjson import to_ndjson  # noqa: E402
from labelbridge.labelstudio.mapping import Mapping  # noqa: E402
from labelbridge.labelstudio.results import ResultReader, ResultWriter  # noqa: E402
from labelbridge.model.regions import DataRowRef  # noqa: E402
from labelbridge.model.report import ConversionReport  # noqa: E402

W, H, RATE = 1920, 1080, 29.97
CONFIG = """<View><Video name="video" value="$video" frameRate="29.97"/>
<Labels name="videoLabels" toName="video"><Label value="Car"/><Label value="Person"/></Labels>
<VideoRectangle name="box" toName="video"/>
<Choices name="occluded" toName="video" perRegion="true"><Choice value="yes"/><Choice value="no"/>
</Choices></View>"""
MAPPING = Mapping(CONFIG)
DATA_ROW = DataRowRef(id="cbenchvideo00000000000001")


def synthetic_row(frames: int, tracks: int, every: int, seed: int = 15) -> tuple[bytes, int]:
    """An export-v2 video row and its number of keyframes."""
    rnd = random.Random(seed)
    out: dict[str, dict] = {}
    segments: dict[str, list] = {}
    keys: dict[str, dict] = {}
    count = 0
    for t in range(tracks):
        fid = f"cbenchtrack{t:014d}"
        name = ("Car", "Person")[t % 2]
        start = rnd.randint(1, every)
        segments[fid] = []
        while start <= frames:
            end = min(frames, start + rnd.randint(every * 5, every * 40))
            segments[fid].append([start, end])
            kf = list(range(start, end, every)) + [end]
            for f in kf:
                slot = out.setdefault(str(f), {"objects": {}, "classifications": []})
                slot["objects"][fid] = {
                    "feature_id": fid, "feature_schema_id": f"cschema{t % 2:018d}", "name": name,
                    "annotation_kind": "VideoBoundingBox",
                    "classifications": [{"feature_id": f"cbenchocc{t:016d}", "name": "occluded",
                                         "radio_answer": {"name": "no", "classifications": []}}],
                    "bounding_box": {"top": rnd.uniform(0, H - 100), "left": rnd.uniform(0, W - 100),
                                     "height": rnd.uniform(10, 100), "width": rnd.uniform(10, 100)}}
                keys.setdefault(fid, {})[str(f)] = True
            count += len(kf)
            start = end + rnd.randint(2, every * 10)
    row = {"data_row": {"id": "cbenchvideo00000000000001", "global_key": "bench/video.mp4",
                        "row_data": "https://storage.example.com/bench/video.mp4"},
           "media_attributes": {"width": W, "height": H, "mime_type": "video/mp4",
                                "frame_rate": RATE, "frame_count": frames},
           "projects": {"cbenchproject000000000001": {"name": "bench", "labels": [
               {"label_kind": "Video", "version": "1.0.0", "id": "cbenchlabel00000000000001",
                "annotations": {"frames": out, "segments": segments,
                                "key_frame_feature_map": keys, "classifications": []}}]}}}
    return orjson.dumps(row), count


def lb_to_ls(raw: bytes) -> list[dict]:
    """What /predict does with a video row: compact it, read it, write the results."""
    report = ConversionReport()
    tr = task_regions(compact_row(orjson.loads(raw), Selection("project_labels"))[1], report)
    return ResultWriter(MAPPING, report).write(tr)


def ls_to_lb(stored: bytes) -> list[dict]:
    """What delivery does with a video annotation: read the results, write NDJSON."""
    report = ConversionReport()
    return to_ndjson(ResultReader(MAPPING, report).read(orjson.loads(stored), DATA_ROW), report)


def best(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """The fastest of ``repeat`` runs of each function, run in turn (floor, then the
    conversions) so that the machine's noise falls on all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--tracks", type=int, default=50)
    ap.add_argument("--every", type=int, default=10, help="a keyframe every N frames")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke check: 3 repeats")
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    raw, keyframes = synthetic_row(args.frames, args.tracks, args.every)
    log(f"export row: {len(raw) / 1e6:.1f} MB, {keyframes} keyframes")
    results = lb_to_ls(raw)
    stored = orjson.dumps(results)
    lines = ls_to_lb(stored)
    got = sum(len(s["keyframes"]) for line in lines for s in line.get("segments", ()))
    if got != keyframes:  # a wrong answer fails the bench
        log(f"ERROR: {got} keyframes came back, {keyframes} went out")
        return 1
    floor, forward, backward = best([lambda: orjson.loads(raw), lambda: lb_to_ls(raw),
                                     lambda: ls_to_lb(stored)], repeat)
    rows = [("orjson.loads of the export row (floor)", floor),
            ("Labelbox -> Label Studio", forward), ("Label Studio -> Labelbox", backward)]
    print(f"{'measure':<42} {'keyframes/s':>12} {'ratio to floor':>15}")
    for label, secs in rows:
        print(f"{label:<42} {keyframes / secs:>12,.0f} {floor / secs:>15.3f}")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / ("video-quick.json" if args.quick else "video.json")).write_text(json.dumps({
        "frames": args.frames, "tracks": args.tracks, "keyframes": keyframes,
        "row_bytes": len(raw), "seconds": {label: secs for label, secs in rows},
        "keyframes_per_s": {label: keyframes / secs for label, secs in rows}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
