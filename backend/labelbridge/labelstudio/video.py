"""Neutral video tracks <-> Label Studio ``videorectangle`` values.

Label Studio facts handled here (editor ``regions/VideoRegion.js``, ``VideoRectangleRegion.js``,
``tags/object/Video/Video.js``): a region's ``sequence`` holds its keyframes, ``frame`` 1-based,
``time = frame / frameRate`` (the Video tag's ``frameRate``, default 24, may name a task field
such as ``$fps``), x/y/width/height in percent of the video frame, ``rotation`` in degrees;
boxes are interpolated linearly between keyframes, and a keyframe with ``enabled: false`` is
the last frame shown until the next keyframe (``isInLifespan``), so it ends a segment. A last
keyframe still enabled keeps the box on screen to the end of the video. The value also holds
``framesCount`` and ``duration`` (seconds). Classifications of a region hold one answer for the
whole track; Labelbox asks them per keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import orjson

from labelbridge.labelstudio.mapping import Mapping, ObjectTarget
from labelbridge.model.regions import (Box, Classification, Keyframe, Region, TaskRegions,
                                       VideoInfo, VideoSegment, VideoTrack)
from labelbridge.model.report import ConversionReport

DEFAULT_FRAME_RATE = 24.0


class VideoValueError(ValueError):
    """A ``videorectangle`` value that cannot be read; the message names the field."""


@dataclass(frozen=True, slots=True)
class Timing:
    frame_rate: float
    frames_count: int | None = None
    duration: float | None = None

    def time(self, frame: int) -> float:
        return frame / self.frame_rate

    def frame(self, time: float) -> int:
        """The frame shown at ``time``: exact for every time ``time(frame)`` gives."""
        return round(time * self.frame_rate)


def frame_rate(attr: Any, task_data: dict | None = None) -> float:
    """The Video tag's ``frameRate`` as the editor normalizes it (``$field`` from task data,
    below 1 taken as seconds per frame, unusable -> 24)."""
    raw = attr
    if isinstance(raw, str) and raw.startswith("$"):
        raw = (task_data or {}).get(raw[1:])
    try:
        rate = float(raw)
    except (TypeError, ValueError):
        return DEFAULT_FRAME_RATE
    if not rate > 0 or rate != rate or rate == float("inf"):
        return DEFAULT_FRAME_RATE
    return 1.0 / rate if rate < 1 else rate


def timing(rate: float, info: VideoInfo | None) -> Timing:
    """Frames count and duration from the data row; the tag's frame rate decides ``time``."""
    count = info.frame_count if info else None
    duration = info.duration if info else None
    if duration is None and count and info and info.frame_rate:
        duration = count / info.frame_rate
    return Timing(rate, count, duration)


def _pct(v: float, total: float) -> float:
    return v / total * 100.0


def _px(v: Any, total: float) -> float:
    return float(v) / 100.0 * total


# ===== neutral -> Label Studio ================================================================

def track_value(track: VideoTrack, width: float, height: float, t: Timing) -> dict:
    """The ``value`` of a videorectangle result (without labels)."""
    sequence = []
    for seg in track.segments:
        last = len(seg.keyframes) - 1
        for i, kf in enumerate(seg.keyframes):
            b = kf.box
            sequence.append({"frame": kf.frame, "enabled": i != last,
                             "x": _pct(b.left, width), "y": _pct(b.top, height),
                             "width": _pct(b.width, width), "height": _pct(b.height, height),
                             "rotation": b.rotation, "time": t.time(kf.frame)})
    last_frame = sequence[-1]["frame"] if sequence else 0
    count = max(t.frames_count or 0, last_frame)
    duration = t.duration if t.duration is not None else count / t.frame_rate
    return {"framesCount": count, "duration": duration, "sequence": sequence}


def track_classifications(track: VideoTrack) -> tuple[tuple[Classification, ...], int | None]:
    """The classifications of a track as Label Studio holds them (one set for the region), and
    the first frame whose own set differs (None when every keyframe agrees)."""
    keyframes = [kf for seg in track.segments for kf in seg.keyframes]
    chosen = next((kf.classifications for kf in keyframes if kf.classifications), ())
    differs = next((kf.frame for kf in keyframes if kf.classifications != chosen), None)
    return chosen, differs


# ===== Label Studio -> neutral ================================================================

def _item_frame(item: dict, i: int, t: Timing) -> int:
    frame, time = item.get("frame"), item.get("time")
    if isinstance(frame, (int, float)) and not isinstance(frame, bool):
        if frame != int(frame) or frame < 1:
            raise VideoValueError(f"sequence[{i}].frame: {frame!r} is not a frame number >= 1")
        return int(frame)
    if isinstance(time, (int, float)) and not isinstance(time, bool) and time > 0:
        return t.frame(float(time))
    raise VideoValueError(f"sequence[{i}]: no frame (and no time)")


def read_track(value: Any, width: float, height: float, t: Timing,
               classifications: tuple[Classification, ...] = ()) -> tuple[VideoTrack, bool]:
    """A track from a videorectangle value, each keyframe carrying ``classifications``.

    A last keyframe still enabled keeps its box to the end of the video: the track gets a
    closing keyframe on ``framesCount``. The flag says when that was impossible (no
    ``framesCount``), so the track ends at its last keyframe instead."""
    if not isinstance(value, dict):
        raise VideoValueError(f"not an object (got {type(value).__name__})")
    raw = value.get("sequence")
    if not isinstance(raw, list) or not raw:
        raise VideoValueError("sequence: missing or empty")
    items: dict[int, tuple[dict, Box]] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise VideoValueError(f"sequence[{i}]: not an object")
        frame = _item_frame(item, i, t)
        try:
            box = Box(_px(item["x"], width), _px(item["y"], height), _px(item["width"], width),
                      _px(item["height"], height), float(item.get("rotation") or 0.0) % 360.0)
        except KeyError as exc:
            raise VideoValueError(f"sequence[{i}]: missing {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise VideoValueError(f"sequence[{i}]: {exc}") from None
        items[frame] = (item, box)  # the editor keeps one keyframe per frame; the last wins
    segments: list[VideoSegment] = []
    current: list[Keyframe] = []
    for frame in sorted(items):
        item, box = items[frame]
        current.append(Keyframe(frame, box, classifications))
        if item.get("enabled", True) is False:
            segments.append(VideoSegment(tuple(current)))
            current = []
    cut_short = False
    if current:
        count = value.get("framesCount")
        last = current[-1]
        if isinstance(count, int) and not isinstance(count, bool) and count >= last.frame:
            if count > last.frame:
                current.append(Keyframe(count, last.box, classifications))
        else:
            cut_short = True
        segments.append(VideoSegment(tuple(current)))
    return VideoTrack(tuple(segments)), cut_short


# ===== hooks of the result writer and reader ==================================================

def _rate_attr(mapping: Mapping, to_name: str) -> Any:
    obj = mapping.config.object(to_name)  # None: no such object (the config is checked elsewhere)
    return obj.attr.get("frameRate") if obj is not None else None


def tag_frame_rate(mapping: Mapping, to_name: str, known: float | None,
                   task_data: dict | None = None) -> float:
    """The frame rate of the config's Video tag ``to_name``. A ``$field`` rate is the task's
    (``task_data``); without the task (predictions prepared per data row) the data row's
    (``known``), which ``task_retimer`` corrects per task."""
    attr = _rate_attr(mapping, to_name)
    if isinstance(attr, str) and attr.startswith("$"):
        return frame_rate(attr, task_data) if task_data is not None else frame_rate(known)
    return frame_rate(attr if attr is not None else DEFAULT_FRAME_RATE)


def rate_fields(mapping: Mapping) -> dict[str, str]:
    """Video tag name -> the task field its ``frameRate`` names (``frameRate="$fps"``)."""
    out = {}
    for obj in mapping.config.objects:
        attr = obj.attr.get("frameRate") if obj.tag == "Video" else None
        if isinstance(attr, str) and attr.startswith("$") and len(attr) > 1:
            out[obj.name] = attr[1:]
    return out


def task_retimer(mapping: Mapping) -> Callable[[bytes, dict], bytes] | None:
    """For a config whose Video ``frameRate`` names a task field: a function giving a prepared
    prediction (JSON bytes) the task's frame rate (every keyframe's ``time`` = frame / rate, as
    the editor reads it); None when predictions need nothing from the task."""
    fields = rate_fields(mapping)
    if not fields:
        return None

    def retime(prediction: bytes, task_data: dict) -> bytes:
        doc = orjson.loads(prediction)
        changed = False
        for item in doc.get("result", ()) if isinstance(doc, dict) else ():
            if item.get("type") != "videorectangle" or item.get("to_name") not in fields:
                continue
            rate = frame_rate("$" + fields[item["to_name"]], task_data)
            for kf in item["value"]["sequence"]:
                if kf["time"] != (t := kf["frame"] / rate):
                    kf["time"], changed = t, True
        return orjson.dumps(doc) if changed else prediction
    return retime


def rate_data(mapping: Mapping, info: VideoInfo | None) -> dict[str, float]:
    """The task data a task made from a data row needs for a ``$field`` frame rate: the data
    row's rate under that field (nothing when it is unknown: the editor then counts 24)."""
    if info is None or not info.frame_rate:
        return {}
    return {field: info.frame_rate for field in rate_fields(mapping).values()}


def write_region(region: Region, target: ObjectTarget, tr: TaskRegions, mapping: Mapping,
                 report: ConversionReport, row: str | None,
                 classify: Callable[[Classification], list[dict]]) -> list[dict]:
    """The results of one track: its videorectangle (labels merged in, as the editor does)
    and its per-region classifications."""
    if not tr.width or not tr.height:
        report.loss("videobox", "video frame size unknown (no media_attributes width/height)",
                    region.name, row)
        return []
    known = tr.video.frame_rate if tr.video else None
    t = timing(tag_frame_rate(mapping, target.to_name, known), tr.video)
    if not isinstance(region.shape, VideoTrack):
        raise TypeError(f"region {region.id} is not a video track")
    value = track_value(region.shape, tr.width, tr.height, t)
    if target.label is not None:
        value["labels"] = [target.label]
    main = {"id": region.id, "from_name": target.control, "to_name": target.to_name,
            "type": target.result_type, "original_width": tr.width,
            "original_height": tr.height, "value": value}
    if region.score is not None:
        main["score"] = region.score
    report.ok("videobox")
    out = [main]
    chosen, differs = track_classifications(region.shape)
    if differs is not None:
        report.loss("videobox", f"classifications change at frame {differs}; a Label Studio "
                    "region holds one set for the whole track: sent the first", region.name,
                    row)
    for c in (*chosen, *region.classifications):
        out.extend(classify(c))
    return out


def covers_video(c: Classification, tr: TaskRegions, report: ConversionReport, row: str
                 ) -> bool:
    """Whether a frame-ranged classification can be a whole-video Label Studio one."""
    count = tr.video.frame_count if tr.video else None
    if count and c.frames == ((1, count),):
        return True
    report.loss(c.kind, f"answered on frames {_ranges_text(c.frames)} only; Label Studio "
                "Choices/TextArea on a video hold one answer for the whole video", c.name, row)
    return False


def _ranges_text(frames: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{s}-{e}" if s != e else str(s) for s, e in frames)


def read_result(item: dict, sizes: list, mapping: Mapping, report: ConversionReport, name: str,
                row: str | None, task_data: dict | None = None) -> VideoTrack | None:
    """The track of a videorectangle result, or None (the loss reported)."""
    w = item.get("original_width") or (sizes[0][0] if sizes else None)
    h = item.get("original_height") or (sizes[0][1] if sizes else None)
    if not w or not h:
        report.loss("videobox", "video frame size unknown (no original_width/height)", name,
                    row)
        return None
    t = Timing(tag_frame_rate(mapping, item.get("to_name", ""), None, task_data or {}))
    try:
        track, cut_short = read_track(item.get("value"), float(w), float(h), t)
    except VideoValueError as exc:
        report.loss("videobox", f"value.{exc}", name, row)
        return None
    if cut_short:
        report.loss("videobox", "the last keyframe is still enabled (shown to the end of the "
                    "video) but framesCount is missing: the track ends at its last keyframe",
                    name, row)
    return track


def with_classifications(track: VideoTrack, items: tuple[Classification, ...]) -> VideoTrack:
    """The track with the region's classifications asked on every keyframe (as Labelbox
    holds them)."""
    if not items:
        return track
    return VideoTrack(tuple(VideoSegment(tuple(Keyframe(k.frame, k.box, items)
                                               for k in s.keyframes)) for s in track.segments))
