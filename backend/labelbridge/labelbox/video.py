"""Labelbox video annotations <-> neutral video tracks.

Export side (export-v2 ``label_kind: "Video"``): ``frames`` maps a frame number (a string) to
``{"objects": {feature_id: object}, "classifications": [...]}``; ``segments`` maps a feature id
to ``[[start, end], ...]`` (inclusive); ``key_frame_feature_map`` tells which frames of a
feature were drawn (``{frame: bool}``, or a list of frames). An export made with
``interpolated_frames`` also lists the frames in between: only keyframes are kept (both
products interpolate linearly themselves), plus a segment's first and last frame.

Import side: one NDJSON line per track, ``segments`` of ``keyframes`` (frame, bbox in pixels,
per-frame classifications). The SDK serializer merges every track of one class into ONE object
(``_create_video_annotations`` groups by name), and every answer of a frame classification
into the first one, so these lines are written here, in the shape the SDK gives a single track.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from typing import Any, Callable, Iterable

import orjson

from labelbridge.labelbox.errors import ExportError
from labelbridge.labelbox.shapes import RowContext, read_box
from labelbridge.model.features import FeatureTable, Path
from labelbridge.model.ids import ndjson_uuid, region_id_for_feature
from labelbridge.model.regions import (Box, Classification, Keyframe, Region, VideoInfo,
                                       VideoSegment, VideoTrack)
from labelbridge.model.report import ConversionReport

# reads a list of exported classification items: (items, id path) -> classifications
Classify = Callable[[list, tuple], "tuple[Classification, ...]"]
Ranges = tuple[tuple[int, int], ...]


def is_video(annotations: dict) -> bool:
    return "frames" in annotations or "segments" in annotations


def video_info(media: dict) -> VideoInfo:
    """Frame rate, frame count and duration from ``media_attributes`` (what is there)."""
    def num(*keys: str) -> float | None:
        for k in keys:
            v = media.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return float(v)
        return None
    rate, count = num("frame_rate", "frameRate"), num("frame_count", "frameCount")
    duration = num("duration")
    if duration is None and rate and count:
        duration = count / rate
    return VideoInfo(rate, int(count) if count else None, duration)


def runs(frames: Iterable[int]) -> Ranges:
    """Inclusive ranges of consecutive frame numbers: [1, 2, 3, 7] -> ((1, 3), (7, 7))."""
    out: list[list[int]] = []
    for f in sorted(set(frames)):
        if out and f == out[-1][1] + 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return tuple((a, b) for a, b in out)


# ===== export rows -> neutral =================================================================

MERGE_LOSSES = "labelbridge_merge_losses"   # what ``video_merge.merge`` could not keep


def frame_number(key: Any) -> int | None:
    try:
        n = int(key)
    except (TypeError, ValueError):
        return None
    return n if n >= 1 else None


def _ranges(raw: Any) -> Ranges | None:
    if not isinstance(raw, list):
        return None
    out = []
    for r in raw:
        if not (isinstance(r, (list, tuple)) and len(r) == 2):
            return None
        s, e = frame_number(r[0]), frame_number(r[1])
        if s is None or e is None or e < s:
            return None
        out.append((s, e))
    return tuple(sorted(out))


def _keyframe_set(raw: Any) -> set[int] | None:
    if isinstance(raw, dict):
        return {n for k, v in raw.items() if v and (n := frame_number(k)) is not None}
    if isinstance(raw, list):
        return {n for k in raw if (n := frame_number(k)) is not None}
    return None


class VideoReader:
    """Reads the video part of one label into tracks (regions) and frame classifications."""

    def __init__(self, row_name: str, classify: Classify, report: ConversionReport) -> None:
        self.row = row_name
        self.classify = classify
        self.report = report

    def _dict(self, value: Any, where: str) -> dict:
        if value is None or isinstance(value, dict):
            return value or {}
        self.report.loss("video", f"{where} is not an object (got {type(value).__name__})",
                         None, self.row)
        return {}

    def read(self, ann: dict) -> tuple[list[Region], list[Classification]]:
        for reason, feature in ann.get(MERGE_LOSSES) or ():
            self.report.loss("video", reason, feature, self.row)
        frames: dict[int, dict] = {}
        for key, frame in self._dict(ann.get("frames"), "frames").items():
            n = frame_number(key)
            if n is None or not isinstance(frame, dict):
                self.report.loss("video", f"frame key {key!r} is not a frame number >= 1",
                                 None, self.row)
                continue
            frames[n] = frame
        by_feature: dict[str, dict[int, dict]] = defaultdict(dict)
        for n in sorted(frames):
            for fid, obj in self._dict(frames[n].get("objects"), f"frames.{n}.objects").items():
                if isinstance(obj, dict):
                    by_feature[str(fid)][n] = obj
        segments = self._dict(ann.get("segments"), "segments")
        key_map = self._dict(ann.get("key_frame_feature_map"), "key_frame_feature_map")
        regions = []
        order = [f for f in segments if f in by_feature] + [f for f in by_feature
                                                            if f not in segments]
        for index, fid in enumerate(order):  # the export's order of features
            region = self._track(fid, by_feature[fid], segments.get(fid), key_map.get(fid),
                                 index)
            if region is not None:
                regions.append(region)
        return regions, self._frame_classifications(frames, segments)

    def _track(self, fid: str, per_frame: dict[int, dict], raw_segments: Any, raw_keys: Any,
               index: int) -> Region | None:
        first = per_frame[min(per_frame)]
        name = first.get("name") or first.get("value") or ""
        if not all("bounding_box" in o for o in per_frame.values()):
            kind = first.get("annotation_kind") or "object"
            self.report.loss("video", f"{kind} on video: Label Studio tracks only boxes "
                             "(VideoRectangle)", name or None, self.row)
            return None
        spans = _ranges(raw_segments)
        if spans is None:
            if raw_segments is not None:
                self.report.loss("video", f"segments of feature {fid} are malformed; used the "
                                 "runs of frames it appears in", name or None, self.row)
            spans = runs(per_frame)
        keys = _keyframe_set(raw_keys)
        if keys is None:
            keys = set(per_frame)  # no key frame map: every exported frame was drawn
        rid = region_id_for_feature(fid, self.row, "video", index)
        frames = sorted(per_frame)  # per_frame was filled in frame order
        nested_cache: dict[bytes, tuple[Classification, ...]] = {}
        out = []
        for start, end in spans:
            lo, hi = bisect_left(frames, start), bisect_right(frames, end)
            wanted = [f for f in frames[lo:hi] if f in keys or f == start or f == end]
            if not wanted:
                self.report.loss("video", f"segment {start}-{end} has no box on any frame",
                                 name or None, self.row)
                continue
            if (wanted[0], wanted[-1]) != (start, end):
                self.report.loss("video", f"segment {start}-{end} has no box on its first or "
                                 f"last frame; kept {wanted[0]}-{wanted[-1]}", name or None,
                                 self.row)
            keyframes = []
            for f in wanted:
                box = self._box(per_frame[f], name)
                if box is not None:
                    keyframes.append(Keyframe(f, box, self._nested(per_frame[f], rid,
                                                                   nested_cache)))
            if keyframes:
                out.append(VideoSegment(tuple(keyframes)))
        starts = [s for s, _ in spans]
        stray = sorted(f for f in keys & per_frame.keys()
                       if (i := bisect_right(starts, f) - 1) < 0 or f > spans[i][1])
        if stray:
            self.report.loss("video", f"keyframes {stray} lie outside the feature's segments",
                             name or None, self.row)
        if not out:
            return None
        return Region(id=rid, name=name, shape=VideoTrack(tuple(out)),
                      schema_id=first.get("feature_schema_id"))

    def _nested(self, obj: dict, rid: str, cache: dict[bytes, tuple[Classification, ...]]
                ) -> tuple[Classification, ...]:
        """A keyframe's classifications; a track repeats the same ones on most keyframes, so
        each distinct list is read once."""
        items = obj.get("classifications")
        if not items:
            return ()
        key = orjson.dumps(items)
        if key not in cache:
            cache[key] = self.classify(items, (rid,))
        return cache[key]

    def _box(self, obj: dict, name: str) -> Box | None:
        try:  # the image reader's checks: missing, null, strings, NaN, infinities, negatives
            box = read_box(obj.get("bounding_box"), "bounding_box", RowContext())
        except ExportError as exc:
            self.report.loss("video", exc.reason, name or None, self.row, field=exc.field,
                             region=obj.get("feature_id") if isinstance(
                                 obj.get("feature_id"), str) else None)
            return None
        return box  # type: ignore[return-value]

    def _frame_classifications(self, frames: dict[int, dict], segments: dict
                               ) -> list[Classification]:
        """Frame-level classifications: one per feature and answer, with its frame ranges."""
        seen: dict[tuple, tuple[Classification, list[int]]] = {}
        for n in sorted(frames):
            for c in self.classify(frames[n].get("classifications") or [], ("frame",)):
                key = (c.id, c.kind, _answer_key(c))
                if key not in seen:
                    seen[key] = (c, [])
                seen[key][1].append(n)
        out = []
        uses: dict[str | None, int] = defaultdict(int)
        for (cid, _, _), (c, numbers) in seen.items():
            given = _ranges(segments.get(cid)) if cid else None
            ranges = given if given and all(any(s <= n <= e for s, e in given)
                                            for n in numbers) else runs(numbers)
            # one feature answered differently over time: each answer is its own item
            uses[cid] += 1
            rid = cid if uses[cid] == 1 or cid is None else f"{cid}-{uses[cid] - 1}"
            out.append(_with_frames(c, ranges, rid))
        return out


def _answer_key(c: Classification) -> tuple:
    return (c.text,) if c.kind == "text" else tuple(sorted(a.name for a in c.answers))


def _with_frames(c: Classification, frames: Ranges, cid: str | None) -> Classification:
    return Classification(c.name, c.kind, c.answers, c.text, cid, c.score, c.schema_id, frames)


# ===== neutral -> NDJSON lines ================================================================

def _bbox(box: Box) -> dict:
    return {"top": box.top, "left": box.left, "height": box.height, "width": box.width}


class VideoLineWriter:
    """Writes the NDJSON lines of video tracks and frame classifications of one task;
    ``data_row`` is the lines' ``dataRow`` (``{"id"}`` or ``{"globalKey"}``). Features are
    named as in the rest of the ground truth (``ndjson.py``): by ``schemaId`` when the neutral
    object or ``features`` knows it, else by Labelbox's exact name."""

    def __init__(self, data_row: dict, row_name: str, report: ConversionReport,
                 features: FeatureTable | None = None) -> None:
        self.data_row = data_row
        self.row = row_name
        self.report = report
        self.features = features if features is not None else FeatureTable()

    def _named(self, path: Path, name: str, schema_id: str | None) -> tuple[dict, str]:
        """The keys naming a feature in a line, and its exact name (the path below it)."""
        sid, exact = self.features.naming(path, name, schema_id)
        return ({"schemaId": sid} if sid else {"name": exact}), exact

    def _answers(self, c: Classification, here: Path) -> list[dict]:
        out = []
        for a in c.answers:
            keys, exact = self._named(here + (a.name,), a.name, a.schema_id)
            nested = self.nested(a.classifications, here + (exact,)) if a.classifications \
                else None
            out.append({**keys, **({"classifications": nested} if nested else {})})
        return out

    def nested(self, items: Iterable[Classification], parent: Path) -> list[dict]:
        """Nested classifications as NDJSON dicts (the shape of a bbox line's); ``parent``:
        the place of what they are nested under (``("object", "Car")``)."""
        out = []
        for c in items:
            keys, exact = self._named(parent + (c.name,), c.name, c.schema_id)
            if c.kind == "text":
                if c.text:
                    out.append({**keys, "answer": c.text})
                else:
                    self.report.loss("text", "empty text answer", c.name, self.row)
                continue
            answers = self._answers(c, parent + (exact,))
            if not answers:
                self.report.loss(c.kind, "no answer selected", c.name, self.row)
                continue
            out.append({**keys, "answer": answers[0] if c.kind == "radio" else answers})
        return out

    def track_line(self, region: Region) -> dict | None:
        track = region.shape
        if not isinstance(track, VideoTrack):
            raise TypeError(f"region {region.id} is not a video track")
        keys, exact = self._named(("object", region.name), region.name, region.schema_id)
        segments = []
        nested: dict[int, list[dict]] = {}  # keyframes of a track share one classification tuple
        for seg in track.segments:
            keyframes = []
            for kf in seg.keyframes:
                box = kf.box
                if box.rotation % 360:
                    from labelbridge.labelbox.ndjson import rotated_corners  # (it imports us)
                    self.report.loss("videobox", f"frame {kf.frame}: rotation dropped, sent the "
                                     "enclosing axis-aligned box (Labelbox boxes do not rotate)",
                                     region.name, self.row)
                    xs, ys = zip(*rotated_corners(box))
                    box = Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
                key = id(kf.classifications)
                if key not in nested:
                    nested[key] = self.nested(kf.classifications, ("object", exact))
                keyframes.append({"frame": kf.frame, "bbox": _bbox(box),
                                  "classifications": nested[key]})
            segments.append({"keyframes": keyframes})
        if not segments:
            self.report.loss("videobox", "track without keyframes", region.name, self.row)
            return None
        self.report.ok("videobox")
        return {"uuid": ndjson_uuid(region.id), "dataRow": self.data_row, **keys,
                "classifications": [], "segments": segments}

    def classification_lines(self, items: Iterable[Classification]) -> list[dict]:
        """Frame-ranged classifications: radio and checklist one line per answer (the SDK keeps
        only the first answer of a feature); text one line per feature, values with frames."""
        lines: list[dict] = []
        texts: dict[str, dict] = {}
        for c in items:
            frames = [{"start": s, "end": e} for s, e in c.frames]
            keys, exact = self._named(("classification", c.name), c.name, c.schema_id)
            if c.kind == "text":
                if not c.text:
                    self.report.loss("text", "empty text answer", c.name, self.row)
                    continue
                line = texts.setdefault(exact, {**keys, "answer": [], "dataRow": self.data_row})
                line["answer"].append({"value": c.text, "frames": frames})
            else:
                answers = self._answers(c, ("classification", exact))
                if not answers:
                    self.report.loss(c.kind, "no answer selected", c.name, self.row)
                    continue
                line = {"frames": frames, **keys,
                        "answer": answers[0] if c.kind == "radio" else answers,
                        "dataRow": self.data_row}
                if c.id:
                    line["uuid"] = ndjson_uuid(c.id)
                lines.append(line)
            self.report.ok(c.kind)
        return lines + list(texts.values())
