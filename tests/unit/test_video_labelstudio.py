"""labelstudio/video.py: tracks <-> videorectangle values (validated by label-studio-sdk)."""

from __future__ import annotations

import pytest
from label_studio_sdk.label_interface import LabelInterface

from labelbridge.labelstudio.mapping import Mapping
from labelbridge.labelstudio.results import ResultReader, ResultWriter
from labelbridge.labelstudio.video import (Timing, VideoValueError, frame_rate, read_track,
                                           timing, track_classifications, track_value)
from labelbridge.model.regions import (Answer, Box, Classification, DataRowRef, Keyframe, Region,
                                       TaskRegions, VideoInfo, VideoSegment, VideoTrack)
from labelbridge.model.report import ConversionReport

from tests.videorows import VIDEO_CONFIG

W, H = 1280.0, 720.0


def seg(*frames):
    return VideoSegment(tuple(Keyframe(f, Box(f * 1.0, 10.0, 128.0, 72.0)) for f in frames))


TRACK = VideoTrack((seg(1, 5, 9), seg(20), seg(30, 31)))


def test_value_is_valid_for_label_studio_and_ends_each_segment():
    t = Timing(25.0, 300, 12.0)
    value = track_value(TRACK, W, H, t)
    assert [(s["frame"], s["enabled"]) for s in value["sequence"]] == [
        (1, True), (5, True), (9, False), (20, False), (30, True), (31, False)]
    first = value["sequence"][0]
    assert (first["x"], first["y"], first["width"], first["height"]) == (
        100 / 1280, 10 / 7.2, 10.0, 10.0)
    assert first["time"] == 1 / 25 and (value["framesCount"], value["duration"]) == (300, 12.0)
    li = LabelInterface(VIDEO_CONFIG.format(rate=25))
    region = {"id": "r1", "from_name": "box", "to_name": "video", "type": "videorectangle",
              "value": {**value, "labels": ["Car"]}}
    assert li.validate_prediction({"result": [region]}, return_errors=True) == []


def test_read_back_gives_the_same_segments():
    t = Timing(29.97, 300)
    back, cut_short = read_track(track_value(TRACK, W, H, t), W, H, t)
    assert not cut_short
    assert [[k.frame for k in s.keyframes] for s in back.segments] == [[1, 5, 9], [20], [30, 31]]


def test_a_last_keyframe_still_enabled_runs_to_the_end_of_the_video():
    value = {"framesCount": 100, "duration": 4.0, "sequence": [
        {"frame": 3, "enabled": True, "x": 1, "y": 1, "width": 10, "height": 10},
        {"frame": 8, "enabled": True, "x": 2, "y": 1, "width": 10, "height": 10}]}
    track, cut_short = read_track(value, 100, 100, Timing(24.0))
    assert not cut_short
    (segment,) = track.segments
    assert [k.frame for k in segment.keyframes] == [3, 8, 100]
    assert segment.keyframes[-1].box == segment.keyframes[1].box
    del value["framesCount"]
    track, cut_short = read_track(value, 100, 100, Timing(24.0))
    assert cut_short and [k.frame for k in track.segments[0].keyframes] == [3, 8]


def test_frame_from_time_when_frame_is_missing_and_errors_name_the_field():
    t = Timing(29.97)
    value = {"framesCount": 10, "sequence": [
        {"time": t.time(7), "enabled": False, "x": 1, "y": 1, "width": 1, "height": 1}]}
    assert read_track(value, 10, 10, t)[0].segments[0].start == 7
    with pytest.raises(VideoValueError, match=r"sequence\[0\]: missing 'width'"):
        read_track({"sequence": [{"frame": 1, "x": 1, "y": 1, "height": 1}]}, 10, 10, t)
    with pytest.raises(VideoValueError, match=r"sequence\[0\].frame: 0 is not a frame"):
        read_track({"sequence": [{"frame": 0, "x": 1, "y": 1, "width": 1, "height": 1}]},
                   10, 10, t)
    with pytest.raises(VideoValueError, match="not an object"):
        read_track([1], 10, 10, t)
    with pytest.raises(VideoValueError, match=r"sequence\[0\]: not an object"):
        read_track({"sequence": ["x"]}, 10, 10, t)
    with pytest.raises(VideoValueError, match="sequence: missing or empty"):
        read_track({"sequence": []}, 10, 10, t)


def test_frame_rate_as_the_editor_normalizes_it():
    assert frame_rate("29.97") == 29.97
    assert frame_rate("$fps", {"fps": 25}) == 25.0
    assert frame_rate("0.04") == 25.0
    assert frame_rate(None) == frame_rate("abc") == frame_rate("-3") == 24.0
    t = timing(30.0, VideoInfo(30.0, 90, None))
    assert (t.frames_count, t.duration) == (90, 3.0)


def test_track_classifications_one_set_or_the_first_frame_that_differs():
    red = (Classification("color", "radio", (Answer("red"),)),)
    blue = (Classification("color", "radio", (Answer("blue"),)),)
    same = VideoTrack((VideoSegment((Keyframe(1, Box(0, 0, 1, 1), red),
                                     Keyframe(2, Box(0, 0, 1, 1), red))),))
    assert track_classifications(same) == (red, None)
    varies = VideoTrack((VideoSegment((Keyframe(1, Box(0, 0, 1, 1)),
                                       Keyframe(4, Box(0, 0, 1, 1), red),
                                       Keyframe(6, Box(0, 0, 1, 1), blue))),))
    assert track_classifications(varies) == (red, 1)


# ----- through ResultWriter / ResultReader -----------------------------------------------------

def mapping():
    return Mapping(VIDEO_CONFIG.format(rate=25))


def test_reader_reports_a_malformed_video_value_with_its_field():
    report = ConversionReport()
    bad = {"id": "r1", "from_name": "box", "to_name": "video", "type": "videorectangle",
           "original_width": 100, "original_height": 100,
           "value": {"labels": ["Car"], "framesCount": 9,
                     "sequence": [{"frame": 1, "x": 1, "y": 1, "height": 1}]}}
    tr = ResultReader(mapping(), report).read([bad], DataRowRef(id="crow"))
    assert tr.regions == ()
    assert "videobox: value.sequence[0]: missing 'width' (feature 'Car', region r1, data row crow)" in [
        str(e) for e in report.examples]


def test_writer_reports_what_a_video_region_cannot_hold():
    red = (Classification("weather", "radio", (Answer("sunny"),)),)
    track = VideoTrack((VideoSegment((Keyframe(1, Box(0, 0, 1, 1)),
                                      Keyframe(3, Box(0, 0, 1, 1), red))),))
    framed = Classification("weather", "radio", (Answer("rainy"),), id="c1", frames=((2, 5),))
    whole = Classification("weather", "radio", (Answer("sunny"),), id="c2", frames=((1, 30),))
    tr = TaskRegions(DataRowRef(id="crow"), (Region("r1", "Car", track),), (framed, whole),
                     width=100, height=100, video=VideoInfo(25.0, 30, 1.2))
    report = ConversionReport()
    result = ResultWriter(mapping(), report).write(tr)
    assert [(r["id"], r["type"]) for r in result] == [("r1", "videorectangle"), ("c2", "choices")]
    reasons = [str(e) for e in report.examples]
    assert any("classifications change at frame 1" in r for r in reasons), reasons
    assert any("answered on frames 2-5 only" in r for r in reasons), reasons
