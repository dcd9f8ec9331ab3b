"""Labelbox segmentation masks <-> the neutral ``Mask``.

Labelbox facts handled here:

* An export object of kind ``ImageSegmentationMask`` points at its pixels: a single-instance
  ``"mask": {"url"}`` (a PNG whose non-black, non-transparent pixels are the object) or a
  composite ``"composite_mask": {"url", "color_rgb"}`` (one PNG per label, each instance in a
  colour of its own, matched exactly). The URLs refuse requests without the API key
  (``mask_fetch.MaskFetcher``). Offline exports may carry ``"png": <base64>`` instead of a
  ``url``, or a url that is ``file://``, ``data:`` or a path relative to the export file.
* A mask imports as ``{"mask": {"png": <base64 PNG>}}``, a binary 0/1 grayscale PNG at the
  image's size, which ``NDJsonConverter`` writes from ``lb.Mask(MaskData(arr=...), color=1)``.

Reading a PNG happens once per URL (``MaskSource`` keeps the colour runs of the last PNGs,
bounded in bytes), so a composite shared by a label's instances is fetched and decoded once.
Conversion works on runs of equal pixels, never per pixel in Python.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from labelbridge.labelbox.mask_fetch import MaskFetcher, MaskFetchError, redact
from labelbridge.labelbox.mask_payload import to_payload
from labelbridge.model.regions import Mask

CACHE_BYTES = 64 << 20
_OPAQUE = np.uint32(0xFF000000)  # a pixel's code: r | g << 8 | b << 16 | opaque; transparent 0
MAX_PIXELS = 1 << 28  # 268 MP: larger PNGs are refused before decoding (decompression bombs)
STRIP_PIXELS = 1 << 20  # pixels converted to codes at a time


class MaskError(ValueError):
    """A mask cannot be read; the message says which and why."""


# ----- PNG -> runs of pixel codes ------------------------------------------------------------

@dataclass(frozen=True)
class CodeRuns:
    """A PNG as runs of equal pixels (row-major): ``codes[i]`` from pixel ``starts[i]`` on.
    A code is a gray level (``gray``: the PNG is grayscale) or ``r | g << 8 | b << 16`` with
    the top byte 0xFF for an opaque pixel and 0 for a transparent one."""

    width: int
    height: int
    codes: np.ndarray
    starts: np.ndarray
    gray: bool

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.starts.nbytes

    def colors(self) -> set[tuple[int, int, int]]:
        """The colours present, black and transparent aside."""
        if self.gray:
            return {(int(v),) * 3 for v in np.unique(self.codes) if v}
        opaque = np.unique(self.codes[self.codes > _OPAQUE])
        return {(int(c) & 255, int(c) >> 8 & 255, int(c) >> 16 & 255) for c in opaque}

    def _hits(self, color: tuple[int, int, int] | None) -> np.ndarray:
        if color is None:
            return self.codes > (0 if self.gray else _OPAQUE)
        r, g, b = color
        if self.gray:
            return self.codes == r if r == g == b else np.zeros(len(self.codes), dtype=bool)
        return self.codes == (_OPAQUE | np.uint32(r | g << 8 | b << 16))

    def instance(self, color: tuple[int, int, int] | None) -> Mask:
        """The pixels of one colour (exact RGB match), or with ``None`` every pixel that is
        neither black nor transparent."""
        hit = self._hits(color)
        n = self.width * self.height
        first = self.starts[hit]
        edges = np.empty(2 * len(first) + 2, dtype=np.int64)
        edges[0], edges[-1] = 0, n
        edges[1:-1:2], edges[2:-1:2] = first, np.r_[self.starts[1:], n][hit]
        runs = np.diff(edges)
        if len(runs) > 1 and runs[-1] == 0:
            runs = runs[:-1]
        if np.count_nonzero(runs[1:] == 0):  # neighbours of one colour: merge (gray levels)
            return _merged(self.width, self.height, runs)
        return Mask(self.width, self.height, runs.astype("<u4").tobytes())


def _merged(width: int, height: int, runs: np.ndarray) -> Mask:
    """Runs with zero-length gaps inside: the foreground runs around each gap joined."""
    fg = np.zeros(len(runs), dtype=bool)
    fg[1::2] = True
    keep = runs > 0
    fg, runs = fg[keep], runs[keep]
    change = np.flatnonzero(np.r_[True, fg[1:] != fg[:-1]])
    merged = np.add.reduceat(runs, change)
    if fg[0]:
        merged = np.r_[0, merged]
    return Mask(width, height, merged.astype("<u4").tobytes())


def _open(png: bytes) -> Image.Image:
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise MaskError("not a PNG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(png))
            if im.width * im.height > MAX_PIXELS:
                raise MaskError(f"PNG of {im.width}x{im.height} pixels is too large")
            im.load()
    except MaskError:
        raise
    except Exception as exc:  # Pillow raises many kinds for a broken file
        raise MaskError(f"PNG cannot be decoded ({exc.__class__.__name__}: {exc})") from None
    return im


def _pixel_codes(im: Image.Image) -> tuple[np.ndarray, bool]:
    """Flat pixel codes of a decoded PNG, and whether they are gray levels."""
    if im.mode in ("1", "L"):
        return np.asarray(im.convert("L") if im.mode == "1" else im).reshape(-1), True
    if im.mode == "RGB":
        return np.asarray(im.convert("RGBX")).view("<u4").reshape(-1), False
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    codes = np.asarray(rgba).view("<u4").reshape(-1)
    if rgba.getchannel("A").getextrema()[0] == 255:
        return codes, False
    return np.where(codes >> 24 > 0, codes | _OPAQUE, np.uint32(0)), False


def read_png(png: bytes) -> CodeRuns:
    """Decode a mask PNG into runs of equal pixels, a strip of rows at a time (beside the
    decoded image, memory holds one strip's pixel codes, not the whole image's)."""
    im = _open(png)
    w, h = im.size
    rows = max(1, STRIP_PIXELS // w)
    codes_, starts_, last, gray = [], [], None, True
    try:
        for y in range(0, h, rows):
            codes, gray = _pixel_codes(im.crop((0, y, w, min(h, y + rows))))
            starts = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1]
            if last is not None and codes[0] == last:  # a run goes on from the strip above
                starts = starts[1:]
            codes_.append(codes[starts])
            starts_.append(starts + y * w)
            last = codes[-1]
    except (ValueError, OSError) as exc:
        raise MaskError(f"PNG mode {im.mode} cannot be read as a mask ({exc})") from None
    return CodeRuns(w, h, np.concatenate(codes_), np.concatenate(starts_), gray)


# ----- neutral Mask -> Labelbox ---------------------------------------------------------------

def pixels(mask: Mask) -> np.ndarray:
    """The mask as a ``height`` x ``width`` uint8 array of 0 (background) and 1."""
    runs = np.frombuffer(mask.runs, dtype="<u4")
    values = np.zeros(len(runs), dtype=np.uint8)
    values[1::2] = 1
    return np.repeat(values, runs).reshape(mask.height, mask.width)


def labelbox_value(writer: Any, mask: Mask, name: str, report: Any, rid: str) -> Any:
    """The ``ndjson.VALUES`` entry for masks: one Labelbox instance per region."""
    if mask.empty:
        report.loss("mask", "empty mask: no pixel painted", name, region=rid)
        return None
    return to_labelbox(mask)


def to_labelbox(mask: Mask) -> Any:
    """A labelbox ``Mask`` that ``NDJsonConverter`` writes as ``{"png": <0/1 PNG>}``.

    The array is (H, W, 1) with colour 1, so the serializer's ``np.all(arr == color, -1)``
    looks at one channel, not three."""
    import labelbox.types as lb  # ~1 s and ~70 MB: only where lines are written

    return lb.Mask(mask=lb.MaskData(arr=pixels(mask)[:, :, None]), color=1)


# ----- export objects -------------------------------------------------------------------------

def is_mask(obj: dict) -> bool:
    return "mask" in obj or "composite_mask" in obj


def _reference(obj: dict) -> tuple[dict, tuple[int, int, int] | None]:
    """(where the PNG is, instance colour or None) of an export mask object."""
    ref = obj.get("composite_mask") if "composite_mask" in obj else obj.get("mask")
    if not isinstance(ref, dict):
        raise MaskError("mask is not an object")
    color = ref.get("color_rgb", ref.get("colorRGB"))
    if "composite_mask" in obj and color is None:
        raise MaskError("composite_mask has no color_rgb")
    if color is not None:
        if (not isinstance(color, (list, tuple)) or len(color) != 3
                or not all(type(c) is int and 0 <= c <= 255 for c in color)):
            raise MaskError(f"color_rgb must be three integers 0..255, got {color!r}")
        color = (color[0], color[1], color[2])
    if not isinstance(ref.get("url"), str) and not isinstance(ref.get("png"), str):
        raise MaskError("mask has neither a url nor an inline png")
    return ref, color


class MaskSource:
    """Reads export mask objects into neutral masks: fetches each PNG once (by URL; see
    ``mask_fetch``), decodes it, keeps its runs while they fit in ``cache_bytes``."""

    def __init__(self, fetcher: MaskFetcher | None = None, cache_bytes: int = CACHE_BYTES) -> None:
        self.fetcher = fetcher or MaskFetcher()
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, CodeRuns] = OrderedDict()
        self._held = 0

    def describe(self) -> str:
        """What changes the masks read (part of the index fingerprint; never the key)."""
        keyed = any(k.lower() == "authorization" for k in self.fetcher.headers)
        return f"masks:{'with' if keyed else 'without'} key"

    def __getstate__(self) -> dict:  # sent to index worker processes: the settings only
        return {"fetcher": self.fetcher, "cache_bytes": self.cache_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["fetcher"], state["cache_bytes"])

    def runs(self, ref: dict, base_dir: Path | None) -> CodeRuns:
        if isinstance(ref.get("png"), str):
            try:
                return read_png(base64.b64decode(ref["png"], validate=True))
            except binascii.Error:
                raise MaskError("inline png is not valid base64") from None
        url = ref["url"]
        key = url if "://" in url else str((base_dir or Path()) / url)
        got = self._cache.get(key)
        if got is not None:
            self._cache.move_to_end(key)
            return got
        try:
            got = read_png(self.fetcher.fetch(url, base_dir))
        except MaskFetchError as exc:
            raise MaskError(str(exc)) from None
        except MaskError as exc:
            raise MaskError(f"{redact(url)}: {exc}") from None
        self._cache[key] = got
        self._held += got.nbytes
        while self._held > self.cache_bytes and len(self._cache) > 1:  # the newest stays
            self._held -= self._cache.popitem(last=False)[1].nbytes
        return got

    def mask(self, obj: dict, size: tuple[int, int] | None, base_dir: Path | None) -> Mask:
        ref, color = _reference(obj)
        runs = self.runs(ref, base_dir)
        if size and size != (runs.width, runs.height):
            raise MaskError(f"mask PNG is {runs.width}x{runs.height}, the image is "
                            f"{size[0]}x{size[1]}")
        return runs.instance(color)

    def resolve(self, obj: dict, size: tuple[int, int] | None, base_dir: Path | None) -> None:
        """Replace an export mask object's reference by its pixels, or by why it has none
        (read back with ``mask_payload.from_payload``)."""
        done = obj.get("mask")
        if isinstance(done, dict) and ("runs" in done or "error" in done):
            return  # resolved already
        try:
            value: dict = to_payload(self.mask(obj, size, base_dir))
        except MaskError as exc:
            value = {"error": f"mask could not be read: {exc}"}
        obj.pop("composite_mask", None)
        obj["mask"] = value


def resolve_row(compact: dict, source: MaskSource, base_dir: Path | None) -> None:
    """Read every image mask of a compact row (``export.compact_row``) in place, so that the
    index holds pixels and conversion never fetches. A mask that cannot be read carries the
    reason (a loss when the row is converted); the row itself never fails here."""
    ann = compact.get("annotations")
    objects = ann.get("objects") if isinstance(ann, dict) else None
    media = compact.setdefault("media", {})
    width, height = media.get("width"), media.get("height")
    size = (int(width), int(height)) if all(
        type(v) in (int, float) and v > 0 and v == int(v) for v in (width, height)) else None
    for obj in objects if isinstance(objects, list) else ():
        if isinstance(obj, dict) and is_mask(obj) and not str(
                obj.get("annotation_kind") or "").startswith("Video"):
            source.resolve(obj, size, base_dir)
            got = obj["mask"]
            if size is None and "width" in got:  # no media size in the export: the PNG's
                size = media["width"], media["height"] = got["width"], got["height"]
