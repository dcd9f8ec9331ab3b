"""The neutral model both adapters meet in. It knows neither Label Studio nor Labelbox.

Geometry is in absolute pixels of the original media, rounded to ``PIXEL_DIGITS`` decimals by
both adapters (so identical input gives identical output and a round trip gives back the same
numbers); text spans use Python slice semantics over code points (``end`` exclusive); video
frames are numbered from 1 and frame ranges are inclusive. Every region carries the id it has in
Label Studio.

The classes are immutable by convention and hashable (``unsafe_hash``), not frozen: they ship
compiled (``labelbridge.compiled``), and a frozen dataclass's ``__init__`` is generated Python
that sets each field through ``object.__setattr__`` (~0.55 us), where a written ``__init__``
compiles to native code (~0.03 us); a row of a model run builds ~55 of them. Nothing changes one
after it is built; ``dataclasses.replace`` makes a changed copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, Union

PIXEL_DIGITS: Final = 4  # 1/10000 px: far below any tool's precision, far above float noise

ClassificationKind = Literal["radio", "checklist", "text"]
ShapeKind = Literal["bbox", "polygon", "point", "polyline", "span", "mask", "videobox"]


@dataclass(init=False, unsafe_hash=True, slots=True)
class Box:
    """Axis-aligned box, optionally rotated clockwise (degrees) about its top-left corner."""

    left: float
    top: float
    width: float
    height: float
    rotation: float = 0.0
    kind: ShapeKind = field(init=False, repr=False)  # set by __init__

    def __init__(self, left: float, top: float, width: float, height: float,
                 rotation: float = 0.0) -> None:
        self.left, self.top, self.width, self.height = left, top, width, height
        self.rotation = rotation
        self.kind = "bbox"


@dataclass(init=False, unsafe_hash=True, slots=True)
class Polygon:
    """An open ring: the first point is not repeated at the end."""

    points: tuple[tuple[float, float], ...]
    kind: ShapeKind = field(init=False, repr=False)  # set by __init__

    def __init__(self, points: tuple[tuple[float, float], ...]) -> None:
        self.points = points
        self.kind = "polygon"


@dataclass(init=False, unsafe_hash=True, slots=True)
class Polyline:
    points: tuple[tuple[float, float], ...]
    kind: ShapeKind = field(init=False, repr=False)  # set by __init__

    def __init__(self, points: tuple[tuple[float, float], ...]) -> None:
        self.points = points
        self.kind = "polyline"


@dataclass(init=False, unsafe_hash=True, slots=True)
class KeyPoint:
    x: float
    y: float
    kind: ShapeKind = field(init=False, repr=False)  # set by __init__

    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y
        self.kind = "point"


@dataclass(init=False, unsafe_hash=True, slots=True)
class Span:
    """Character span in the task text; ``end`` is exclusive."""

    start: int
    end: int
    text: str | None = None
    kind: ShapeKind = field(init=False, repr=False)  # set by __init__

    def __init__(self, start: int, end: int, text: str | None = None) -> None:
        self.start, self.end, self.text = start, end, text
        self.kind = "span"


@dataclass(init=False, unsafe_hash=True, slots=True)
class Mask:
    """One object's pixels on an image of ``width`` x ``height`` (its natural size), as run
    lengths in row-major order: ``runs`` holds unsigned 32-bit little-endian pixel counts,
    alternately background and foreground, starting with background (0 when the first pixel
    is foreground); no other run is 0, and they add up to ``width * height``."""

    width: int
    height: int
    runs: bytes
    kind: ShapeKind = field(init=False, repr=False)  # set by __init__

    def __init__(self, width: int, height: int, runs: bytes) -> None:
        if width <= 0 or height <= 0 or not runs or len(runs) % 4:
            raise ValueError(f"a {width}x{height} mask needs positive sizes and "
                             f"whole 32-bit runs, got {len(runs)} bytes")
        self.width, self.height, self.runs = width, height, runs
        self.kind = "mask"

    @property
    def empty(self) -> bool:
        """No foreground pixel (only the background run)."""
        return len(self.runs) <= 4


@dataclass(init=False, unsafe_hash=True, slots=True)
class Keyframe:
    """A box drawn on one video frame, with the classifications asked on that frame."""

    frame: int
    box: Box
    classifications: tuple[Classification, ...] = ()

    def __init__(self, frame: int, box: Box,
                 classifications: tuple[Classification, ...] = ()) -> None:
        self.frame, self.box, self.classifications = frame, box, classifications


@dataclass(init=False, unsafe_hash=True, slots=True)
class VideoSegment:
    """A stretch of frames an object is visible in, from its first to its last keyframe;
    between keyframes the box is interpolated (both products do it linearly)."""

    keyframes: tuple[Keyframe, ...]

    def __init__(self, keyframes: tuple[Keyframe, ...]) -> None:
        frames = [k.frame for k in keyframes]
        if not frames or frames != sorted(set(frames)) or frames[0] < 1:
            raise ValueError(f"a segment needs keyframes on distinct ascending frames >= 1, got {frames}")
        self.keyframes = keyframes

    @property
    def start(self) -> int:
        return self.keyframes[0].frame

    @property
    def end(self) -> int:
        return self.keyframes[-1].frame


@dataclass(init=False, unsafe_hash=True, slots=True)
class VideoTrack:
    """One object followed through a video: segments in frame order, with gaps between them."""

    segments: tuple[VideoSegment, ...]
    kind: ShapeKind = field(init=False, repr=False)  # set by __init__

    def __init__(self, segments: tuple[VideoSegment, ...]) -> None:
        for a, b in zip(segments, segments[1:]):
            if b.start <= a.end:
                raise ValueError(f"segments overlap or are out of order: {a.start}-{a.end}, "
                                 f"{b.start}-{b.end}")
        self.segments = segments
        self.kind = "videobox"

    @property
    def keyframes(self) -> int:
        return sum(len(s.keyframes) for s in self.segments)


Shape = Union[Box, Polygon, Polyline, KeyPoint, Span, Mask, VideoTrack]


@dataclass(init=False, unsafe_hash=True, slots=True)
class Answer:
    """One selected option of a radio or checklist question, with what is nested under it."""

    name: str
    classifications: tuple[Classification, ...] = ()
    score: float | None = None
    schema_id: str | None = None

    def __init__(self, name: str, classifications: tuple[Classification, ...] = (),
                 score: float | None = None, schema_id: str | None = None) -> None:
        self.name, self.classifications, self.score = name, classifications, score
        self.schema_id = schema_id


@dataclass(init=False, unsafe_hash=True, slots=True)
class Classification:
    """A question and its answer(s): global (with its own ``id``) or nested in a region/answer."""

    name: str
    kind: ClassificationKind
    answers: tuple[Answer, ...] = ()
    text: str | None = None
    id: str | None = None
    score: float | None = None
    schema_id: str | None = None
    frames: tuple[tuple[int, int], ...] = ()   # video: inclusive frame ranges; () = whole media

    def __init__(self, name: str, kind: ClassificationKind, answers: tuple[Answer, ...] = (),
                 text: str | None = None, id: str | None = None, score: float | None = None,
                 schema_id: str | None = None, frames: tuple[tuple[int, int], ...] = ()) -> None:
        self.name, self.kind, self.answers, self.text = name, kind, answers, text
        self.id, self.score, self.schema_id, self.frames = id, score, schema_id, frames


@dataclass(init=False, unsafe_hash=True, slots=True)
class Region:
    """A located object: its shape, the feature (label) it is, and per-region attributes."""

    id: str
    name: str
    shape: Shape
    classifications: tuple[Classification, ...] = ()
    score: float | None = None
    schema_id: str | None = None

    def __init__(self, id: str, name: str, shape: Shape,
                 classifications: tuple[Classification, ...] = (), score: float | None = None,
                 schema_id: str | None = None) -> None:
        self.id, self.name, self.shape, self.classifications = id, name, shape, classifications
        self.score, self.schema_id = score, schema_id


@dataclass(init=False, unsafe_hash=True, slots=True)
class Relation:
    source: str
    target: str
    name: str | None = None
    bidirectional: bool = False
    id: str | None = None

    def __init__(self, source: str, target: str, name: str | None = None,
                 bidirectional: bool = False, id: str | None = None) -> None:
        self.source, self.target, self.name = source, target, name
        self.bidirectional, self.id = bidirectional, id


@dataclass(init=False, unsafe_hash=True, slots=True)
class DataRowRef:
    """How a task is tied to a Labelbox data row. Any field may be unknown."""

    id: str | None = None
    global_key: str | None = None
    external_id: str | None = None
    row_data: str | None = None

    def __init__(self, id: str | None = None, global_key: str | None = None,
                 external_id: str | None = None, row_data: str | None = None) -> None:
        self.id, self.global_key, self.external_id, self.row_data = (id, global_key,
                                                                     external_id, row_data)


@dataclass(init=False, unsafe_hash=True, slots=True)
class VideoInfo:
    """Timing of a video data row, as far as known (frame rate in frames per second)."""

    frame_rate: float | None = None
    frame_count: int | None = None
    duration: float | None = None

    def __init__(self, frame_rate: float | None = None, frame_count: int | None = None,
                 duration: float | None = None) -> None:
        self.frame_rate, self.frame_count, self.duration = frame_rate, frame_count, duration


@dataclass(init=False, unsafe_hash=True, slots=True)
class TaskRegions:
    """Everything labelled on one data row (one Label Studio task)."""

    data_row: DataRowRef
    regions: tuple[Region, ...] = ()
    classifications: tuple[Classification, ...] = ()
    relations: tuple[Relation, ...] = ()
    width: int | None = None
    height: int | None = None
    video: VideoInfo | None = None

    def __init__(self, data_row: DataRowRef, regions: tuple[Region, ...] = (),
                 classifications: tuple[Classification, ...] = (),
                 relations: tuple[Relation, ...] = (), width: int | None = None,
                 height: int | None = None, video: VideoInfo | None = None) -> None:
        self.data_row, self.regions, self.classifications = data_row, regions, classifications
        self.relations, self.width, self.height, self.video = relations, width, height, video

    def region_ids(self) -> set[str]:
        return {r.id for r in self.regions}
