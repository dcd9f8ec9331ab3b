"""Several video predictions of one data row (one model run's) as one label.

Export-v2 holds each prediction's video part apart (``frames``, ``segments``,
``key_frame_feature_map``, keyed by frame and feature id); ``export.select_annotations`` reads a
row's predictions as one label, so their parts are merged here, feature by feature.
"""

from __future__ import annotations

from typing import Any

from labelbridge.labelbox.video import MERGE_LOSSES, frame_number


def merge(parts: list[dict]) -> dict:
    """The video part of several predictions of one data row (one model run) as one label:
    every feature's boxes per frame, segments and key frames, and every frame's
    classifications. A feature id found in more than one prediction keeps the first's (each
    other is listed under ``MERGE_LOSSES`` as (reason, feature name), for ``VideoReader`` to
    report); a part of the wrong JSON type is listed there too."""
    frames: dict[str, dict] = {}
    merged: dict[str, dict] = {"segments": {}, "key_frame_feature_map": {}}
    owner: dict[str, int] = {}
    losses: list[tuple[str, str | None]] = []

    def owned(fid: str, i: int, name: Any = None) -> bool:
        if owner.setdefault(fid, i) == i:
            return True
        reason = (f"feature {fid} is in more than one prediction of this data row: kept the "
                  "first one's")
        if all(r != reason for r, _ in losses):
            losses.append((reason, name if isinstance(name, str) else None))
        return False

    for i, ann in enumerate(parts, 1):
        for part in ("frames", *merged):
            if not isinstance(ann.get(part) or {}, dict):
                losses.append((f"prediction {i}: {part} is not an object", None))
        raw = ann.get("frames")
        for key, frame in (raw.items() if isinstance(raw, dict) else ()):
            n = frame_number(key)
            into = frames.setdefault(str(n) if n is not None else str(key),
                                     {"objects": {}, "classifications": []})
            if not isinstance(frame, dict):
                continue   # the reader reports the frame key
            objects = frame.get("objects")
            for fid, obj in (objects.items() if isinstance(objects, dict) else ()):
                if owned(fid, i, obj.get("name") if isinstance(obj, dict) else None):
                    into["objects"][fid] = obj
            if isinstance(frame.get("classifications"), list):
                into["classifications"] += frame["classifications"]
        for part, into in merged.items():
            value = ann.get(part)
            for fid, v in (value.items() if isinstance(value, dict) else ()):
                if owned(fid, i):
                    into[fid] = v
    out: dict[str, Any] = {"frames": frames, **merged}
    if losses:
        out[MERGE_LOSSES] = losses
    return out
