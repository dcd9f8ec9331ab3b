"""The neutral model both adapters meet in. It knows neither Label Studio nor Labelbox.

Geometry is in absolute pixels of the original media, rounded to ``PIXEL_DIGITS`` decimals by
both adapters (so identical input gives identical output and a round trip gives back the same
numbers); text spans use Python slice semantics over code points (``end`` exclusive); video
frames are numbered from 1 and frame ranges are inclusive. Every region carries the id it has in
Label Studio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

PIXEL_DIGITS = 4  # 1/10000 px: far below any tool's precision, far above float noise

ClassificationKind = Literal["radio", "checklist", "text"]
ShapeKind = Literal["bbox", "polygon", "point", "polyline", "span", "mask", "videobox"]


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned box, optionally rotated clockwise (degrees) about its top-left corner."""

    left: float
    top: float
    width: float
    height: float
    rotation: float = 0.0
    kind: ShapeKind = field(default="bbox", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class Polygon:
    """An open ring: the first point is not repeated at the end."""

    points: tuple[tuple[float, float], ...]
    kind: ShapeKind = field(default="polygon", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class Polyline:
    points: tuple[tuple[float, float], ...]
    kind: ShapeKind = field(default="polyline", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class KeyPoint:
    x: float
    y: float
    kind: ShapeKind = field(default="point", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class Span:
    """Character span in the task text; ``end`` is exclusive."""

    start: int
    end: int
    text: str | None = None
    kind: ShapeKind = field(default="span", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class Mask:
    """One object's pixels on an image of ``width`` x ``height`` (its natural size), as run
    lengths in row-major order: ``runs`` holds unsigned 32-bit little-endian pixel counts,
    alternately background and foreground, starting with background (0 when the first pixel
    is foreground); no other run is 0, and they add up to ``width * height``."""

    width: int
    height: int
    runs: bytes
    kind: ShapeKind = field(default="mask", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or not self.runs or len(self.runs) % 4:
            raise ValueError(f"a {self.width}x{self.height} mask needs positive sizes and "
                             f"whole 32-bit runs, got {len(self.runs)} bytes")

    @property
    def empty(self) -> bool:
        """No foreground pixel (only the background run)."""
        return len(self.runs) <= 4


@dataclass(frozen=True, slots=True)
class Keyframe:
    """A box drawn on one video frame, with the classifications asked on that frame."""

    frame: int
    box: Box
    classifications: tuple[Classification, ...] = ()


@dataclass(frozen=True, slots=True)
class VideoSegment:
    """A stretch of frames an object is visible in, from its first to its last keyframe;
    between keyframes the box is interpolated (both products do it linearly)."""

    keyframes: tuple[Keyframe, ...]

    def __post_init__(self) -> None:
        frames = [k.frame for k in self.keyframes]
        if not frames or frames != sorted(set(frames)) or frames[0] < 1:
            raise ValueError(f"a segment needs keyframes on distinct ascending frames >= 1, got {frames}")

    @property
    def start(self) -> int:
        return self.keyframes[0].frame

    @property
    def end(self) -> int:
        return self.keyframes[-1].frame


@dataclass(frozen=True, slots=True)
class VideoTrack:
    """One object followed through a video: segments in frame order, with gaps between them."""

    segments: tuple[VideoSegment, ...]
    kind: ShapeKind = field(default="videobox", init=False, repr=False)

    def __post_init__(self) -> None:
        for a, b in zip(self.segments, self.segments[1:]):
            if b.start <= a.end:
                raise ValueError(f"segments overlap or are out of order: {a.start}-{a.end}, "
                                 f"{b.start}-{b.end}")

    @property
    def keyframes(self) -> int:
        return sum(len(s.keyframes) for s in self.segments)


Shape = Union[Box, Polygon, Polyline, KeyPoint, Span, Mask, VideoTrack]


@dataclass(frozen=True, slots=True)
class Answer:
    """One selected option of a radio or checklist question, with what is nested under it."""

    name: str
    classifications: tuple[Classification, ...] = ()
    score: float | None = None
    schema_id: str | None = None


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Region:
    """A located object: its shape, the feature (label) it is, and per-region attributes."""

    id: str
    name: str
    shape: Shape
    classifications: tuple[Classification, ...] = ()
    score: float | None = None
    schema_id: str | None = None


@dataclass(frozen=True, slots=True)
class Relation:
    source: str
    target: str
    name: str | None = None
    bidirectional: bool = False
    id: str | None = None


@dataclass(frozen=True, slots=True)
class DataRowRef:
    """How a task is tied to a Labelbox data row. Any field may be unknown."""

    id: str | None = None
    global_key: str | None = None
    external_id: str | None = None
    row_data: str | None = None


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """Timing of a video data row, as far as known (frame rate in frames per second)."""

    frame_rate: float | None = None
    frame_count: int | None = None
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class TaskRegions:
    """Everything labelled on one data row (one Label Studio task)."""

    data_row: DataRowRef
    regions: tuple[Region, ...] = ()
    classifications: tuple[Classification, ...] = ()
    relations: tuple[Relation, ...] = ()
    width: int | None = None
    height: int | None = None
    video: VideoInfo | None = None

    def region_ids(self) -> set[str]:
        return {r.id for r in self.regions}
