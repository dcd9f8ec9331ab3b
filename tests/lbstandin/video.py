"""Strict checks of video NDJSON lines (the shapes of labelbox.md section 3.3 and the official
video import notebook), used by ``validate.py``.

* Object: ``"segments": [{"keyframes": [{"frame": int >= 1, "bbox"|"point"|"line": ...,
  "classifications": [...]}, ...]}, ...]``; keyframes ascending, segments in frame order and
  not overlapping; the feature must be a tool of the keyframes' geometry; no confidence.
* Frame classification (radio/checklist): ``"frames": [{"start", "end"}, ...]`` (inclusive,
  1 <= start <= end, ascending, not overlapping) on the line, or on each answer (notebook).
* Frame text: ``"answer": [{"value": str, "frames": [...]}, ...]``.
"""

from __future__ import annotations

from typing import Any

KEYFRAME_GEOMETRY = {"bbox": "bbox", "point": "point", "line": "polyline"}


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_frames(ranges: Any, where: str, error) -> None:
    if not isinstance(ranges, list) or not ranges:
        raise error("InvalidAnnotation", f"{where}: frames must be a non-empty list of {{start, end}}")
    last = 0
    for i, r in enumerate(ranges):
        if not isinstance(r, dict) or set(r) != {"start", "end"} \
                or not (_int(r["start"]) and _int(r["end"])):
            raise error("InvalidAnnotation", f"{where}: frames[{i}] must be {{start: int, end: int}}; got {r!r}")
        if not 1 <= r["start"] <= r["end"]:
            raise error("InvalidAnnotation", f"{where}: frames[{i}] needs 1 <= start <= end (inclusive); got {r!r}")
        if r["start"] <= last:
            raise error("InvalidAnnotation", f"{where}: frames[{i}] overlaps or precedes the range before it")
        last = r["end"]


def check_video_object(line: dict, node, check_geometry, check_nested, error) -> None:
    segments = line["segments"]
    if node.kind not in KEYFRAME_GEOMETRY.values():
        raise error("InvalidAnnotation", f"feature {node.name!r} is a {node.kind} feature; video segments need a bbox, point or line tool")
    if "confidence" in line or "customMetrics" in line:
        raise error("InvalidAnnotation", f"{node.name!r}: video objects take no confidence or customMetrics")
    if line.get("classifications"):
        raise error("InvalidAnnotation", f"{node.name!r}: a video object's classifications go on its keyframes")
    if not isinstance(segments, list) or not segments:
        raise error("InvalidAnnotation", f"{node.name!r}: segments must be a non-empty list")
    last = 0
    for i, seg in enumerate(segments):
        where = f"{node.name!r} segments[{i}]"
        if not isinstance(seg, dict) or set(seg) != {"keyframes"} or not isinstance(seg["keyframes"], list) \
                or not seg["keyframes"]:
            raise error("InvalidAnnotation", f"{where}: must be {{\"keyframes\": [non-empty list]}}")
        for j, kf in enumerate(seg["keyframes"]):
            at = f"{where}.keyframes[{j}]"
            if not isinstance(kf, dict):
                raise error("InvalidAnnotation", f"{at}: not an object")
            geometry = [k for k in KEYFRAME_GEOMETRY if k in kf]
            extra = set(kf) - {"frame", "classifications", *KEYFRAME_GEOMETRY}
            if extra or len(geometry) != 1 or not _int(kf.get("frame")):
                raise error("InvalidAnnotation", f"{at}: needs an int frame and exactly one of bbox/point/line; got keys {sorted(kf)}")
            if KEYFRAME_GEOMETRY[geometry[0]] != node.kind:
                raise error("InvalidAnnotation", f"{at}: a {geometry[0]!r} keyframe on {node.kind} feature {node.name!r}")
            if kf["frame"] < 1 or kf["frame"] <= last:
                raise error("InvalidAnnotation", f"{at}: frame {kf['frame']} must be >= 1 and after frame {last} (keyframes ascend, segments do not overlap)")
            last = kf["frame"]
            check_geometry(geometry[0], kf[geometry[0]])
            check_nested(kf.get("classifications", []), at)


def strip_answer_frames(node, answer: Any, where: str, error) -> tuple[Any, bool]:
    """The answer without notebook-style per-answer ``frames`` (checked); whether it had any."""
    if node.kind == "radio" and isinstance(answer, dict) and "frames" in answer:
        check_frames(answer["frames"], where, error)
        return {k: v for k, v in answer.items() if k != "frames"}, True
    if node.kind == "checklist" and isinstance(answer, list) \
            and any(isinstance(a, dict) and "frames" in a for a in answer):
        out = []
        for a in answer:
            if not isinstance(a, dict) or "frames" not in a:
                raise error("InvalidAnnotation", f"{where}: every answer needs frames when one has them")
            check_frames(a["frames"], f"{where} answer {a.get('name')!r}", error)
            out.append({k: v for k, v in a.items() if k != "frames"})
        return out, True
    return answer, False


def check_video_text(node, answer: Any, where: str, error) -> None:
    if not answer:
        raise error("InvalidAnnotation", f"{where}: video text {node.name!r} needs answers")
    for i, a in enumerate(answer):
        if not isinstance(a, dict) or set(a) != {"value", "frames"} or not isinstance(a["value"], str):
            raise error("InvalidAnnotation", f"{where}: answer[{i}] must be {{value: str, frames: [...]}}; got {a!r}")
        check_frames(a["frames"], f"{where} answer[{i}]", error)
