"""Video round trip: Labelbox export row -> Label Studio videorectangle value -> (stored as JSON
and sent back) -> NDJSON lines. Keyframes, segment boundaries and track ids survive exactly
(several tracks per class, gaps, single-frame segments, 24/25/29.97/30 fps, with and without
interpolated frames); frame <-> time is exact."""

from __future__ import annotations

import string

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from labelbridge.labelbox.annotations import _RowReader
from labelbridge.labelbox.export import Selection, select_annotations
from labelbridge.labelbox.shapes import RowContext
from labelbridge.labelbox.video import VideoLineWriter, VideoReader, video_info
from labelbridge.labelstudio.video import Timing, read_track, timing, track_value
from labelbridge.model.ids import ndjson_uuid
from labelbridge.model.regions import PIXEL_DIGITS, Region
from labelbridge.model.report import ConversionReport

from tests.videorows import video_annotations, video_row

RATES = (24.0, 25.0, 29.97, 30.0)
cuids = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=24, max_size=24).map(
    lambda s: "c" + s)


@st.composite
def tracks(draw, width, height, frame_count):
    n = draw(st.integers(1, 6))
    fids = draw(st.lists(cuids, min_size=n, max_size=n, unique=True))
    out = []
    for fid in fids:
        name = draw(st.sampled_from(["Car", "Person"]))  # several tracks per class
        frames = sorted(draw(st.sets(st.integers(1, frame_count), min_size=1, max_size=12)))
        cuts = draw(st.sets(st.integers(1, max(len(frames) - 1, 1)), max_size=3))
        segments, start = [], 0
        for cut in sorted(cuts | {len(frames)}):
            if cut > start:
                segments.append(frames[start:cut])
                start = cut

        def box():
            left = draw(st.floats(0, width - 1, allow_nan=False))
            top = draw(st.floats(0, height - 1, allow_nan=False))
            return (left, top, draw(st.floats(1, width - left, allow_nan=False)),
                    draw(st.floats(1, height - top, allow_nan=False)))
        out.append((fid, name, [[(f, box()) for f in seg] for seg in segments]))
    return out


@st.composite
def videos(draw):
    width, height = draw(st.integers(16, 4096)), draw(st.integers(16, 4096))
    frame_count = draw(st.integers(1, 20000))
    rate = draw(st.sampled_from(RATES))
    return (width, height, frame_count, rate, draw(tracks(width, height, frame_count)),
            draw(st.booleans()))


@settings(max_examples=150, deadline=None)
@given(videos())
def test_tracks_survive_labelbox_to_label_studio_to_labelbox(video):
    width, height, frame_count, rate, drawn, interpolated = video
    row = video_row(video_annotations(drawn, interpolated=interpolated), width=width,
                    height=height, frame_rate=rate, frame_count=frame_count)
    report = ConversionReport()
    rows = _RowReader("crow", report, RowContext())
    _, annotations = select_annotations(row, Selection())
    regions, _ = VideoReader("crow", lambda items, path: rows.classifications(items, ("frames",), path),
                             report).read(annotations)
    assert report.lossless
    t = timing(rate, video_info(row["media_attributes"]))
    writer = VideoLineWriter({"id": "crow"}, "crow", report)
    assert [r.id for r in regions] == [fid for fid, _, _ in drawn]
    for region, (fid, name, segments) in zip(regions, drawn):
        assert region.name == name
        value = orjson.loads(orjson.dumps(track_value(region.shape, width, height, t)))
        assert value["framesCount"] == frame_count
        back, cut_short = read_track(value, width, height, Timing(rate))
        assert not cut_short
        line = writer.track_line(Region(id=region.id, name=name, shape=back))
        assert line["uuid"] == ndjson_uuid(fid)
        got = [[k["frame"] for k in s["keyframes"]] for s in line["segments"]]
        assert got == [[f for f, _ in seg] for seg in segments]
        for s_line, seg in zip(line["segments"], segments):
            for k, (_, (left, top, w, h)) in zip(s_line["keyframes"], seg):
                bb = k["bbox"]
                for key, want in (("left", left), ("top", top), ("width", w), ("height", h)):
                    assert abs(bb[key] - want) <= 0.5 * 10 ** -PIXEL_DIGITS + 1e-9  # rounded
    assert report.lossless


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 10_000_000), st.sampled_from(RATES))
def test_frame_to_time_and_back_is_exact(frame, rate):
    t = Timing(rate)
    time = orjson.loads(orjson.dumps(t.time(frame)))
    assert t.frame(time) == frame
