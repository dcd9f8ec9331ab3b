"""Builders of Labelbox video export rows (export-v2, ``label_kind: "Video"``) for tests/benches.

A track is ``(feature_id, name, segments)``; a segment is a list of keyframes
``(frame, (left, top, width, height))`` or ``(frame, box, classifications)``. With
``interpolated=True`` the row also lists every frame between two keyframes of a segment, with
a linearly interpolated box, marked ``False`` in ``key_frame_feature_map`` (what an export with
``interpolated_frames: True`` looks like).
"""

from __future__ import annotations

from tests.helpers import DATA_ROW, MODEL, RUN

VIDEO_CONFIG = """
<View>
  <Video name="video" value="$video" frameRate="{rate}"/>
  <Labels name="videoLabels" toName="video">
    <Label value="Car"/><Label value="Person"/>
  </Labels>
  <VideoRectangle name="box" toName="video"/>
  <Choices name="weather" toName="video">
    <Choice value="sunny"/><Choice value="rainy"/>
  </Choices>
</View>
"""


def _lerp(a, b, r):
    return tuple(x + (y - x) * r for x, y in zip(a, b))


def video_annotations(tracks, frame_classifications=(), classifications=(), *,
                      interpolated=False, key_map="dict") -> dict:
    frames: dict[str, dict] = {}
    segments: dict[str, list] = {}
    keys: dict[str, dict] = {}

    def put(frame, fid, name, box, nested, key):
        slot = frames.setdefault(str(frame), {"objects": {}, "classifications": []})
        left, top, width, height = box
        slot["objects"][fid] = {
            "feature_id": fid, "feature_schema_id": "cschema" + name.lower().ljust(18, "0")[:18],
            "name": name, "value": name.lower(), "annotation_kind": "VideoBoundingBox",
            "classifications": list(nested),
            "bounding_box": {"top": top, "left": left, "height": height, "width": width}}
        keys.setdefault(fid, {})[str(frame)] = key

    for fid, name, segs in tracks:
        segments[fid] = []
        for seg in segs:
            kfs = [k if len(k) == 3 else (k[0], k[1], ()) for k in seg]
            segments[fid].append([kfs[0][0], kfs[-1][0]])
            for (f, box, nested), nxt in zip(kfs, kfs[1:] + [None]):
                put(f, fid, name, box, nested, True)
                if interpolated and nxt is not None:
                    for g in range(f + 1, nxt[0]):
                        put(g, fid, name, _lerp(box, nxt[1], (g - f) / (nxt[0] - f)), nested,
                            False)
    for frame, item in frame_classifications:
        frames.setdefault(str(frame), {"objects": {}, "classifications": []})[
            "classifications"].append(item)
    if key_map == "list":
        keys = {fid: [int(f) for f, v in m.items() if v] for fid, m in keys.items()}
    out = {"frames": frames, "segments": segments, "classifications": list(classifications)}
    if key_map is not None:
        out["key_frame_feature_map"] = keys
    return out


def video_row(annotations, *, width=1280, height=720, frame_rate=30, frame_count=300,
              data_row_id=DATA_ROW, global_key="vid-1.mp4",
              row_data="http://x/vid-1.mp4", source="predictions") -> dict:
    label = {"label_kind": "Video", "version": "1.0.0", "id": "clabel", "annotations": annotations}
    run = {"name": "r", "predictions": [], "labels": []}
    run["predictions" if source == "predictions" else "labels"].append(label)
    return {"data_row": {"id": data_row_id, "global_key": global_key, "external_id": "ext-v",
                         "row_data": row_data},
            "media_attributes": {"width": width, "height": height, "mime_type": "video/mp4",
                                 "frame_rate": frame_rate, "frame_count": frame_count},
            "experiments": {MODEL: {"name": "m", "runs": {RUN: run}}}}
