"""Masks for tests: hypothesis strategies for random shapes and sizes, PNG builders, and a plain
reference for run lengths (written independently of the code under test)."""

from __future__ import annotations

import io
from itertools import groupby

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from labelbridge.model.regions import Mask

# run lengths around the codec's class limits (x4: one pixel is 4 RGBA bytes)
EDGE_RUNS = [1, 2, 3, 4, 5, 16, 17, 64, 65, 16383, 16384, 16385, 32768, 32769]


def reference_runs(flags: np.ndarray) -> list[int]:
    """Run lengths of a flat boolean array, background first (itertools, no numpy tricks)."""
    runs = [len(list(g)) for _, g in groupby(flags.tolist())]
    return ([0] + runs) if flags.size and flags[0] else runs


def to_mask(flags: np.ndarray) -> Mask:
    h, w = flags.shape
    return Mask(w, h, np.array(reference_runs(flags.ravel()), dtype="<u4").tobytes())


def from_mask(mask: Mask) -> np.ndarray:
    runs = np.frombuffer(mask.runs, dtype="<u4").tolist()
    flat = [bool(i % 2) for i, n in enumerate(runs) for _ in range(n)]
    return np.array(flat, dtype=bool).reshape(mask.height, mask.width)


@st.composite
def run_masks(draw, max_side: int = 300) -> np.ndarray:
    """A boolean mask built from random run lengths (long ones included)."""
    w = draw(st.integers(1, max_side))
    h = draw(st.integers(1, max_side))
    n = w * h
    flags = np.zeros(n, dtype=bool)
    pos, value = 0, draw(st.booleans())
    lengths = st.one_of(st.integers(1, 40), st.sampled_from(EDGE_RUNS), st.integers(1, 70000))
    while pos < n:
        step = draw(lengths)
        flags[pos:pos + step] = value
        pos += step
        value = not value
    return flags.reshape(h, w)


@st.composite
def shape_masks(draw, max_side: int = 200) -> np.ndarray:
    """Rectangles, ellipses and speckle on a random-size image."""
    w = draw(st.integers(1, max_side))
    h = draw(st.integers(1, max_side))
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((h, w), dtype=bool)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["rect", "ellipse", "speckle"]))
        x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
        x1, y1 = draw(st.integers(x0, w)), draw(st.integers(y0, h))
        if kind == "rect":
            out[y0:y1, x0:x1] = True
        elif kind == "ellipse":
            rx, ry = max(x1 - x0, 1) / 2, max(y1 - y0, 1) / 2
            out |= ((xx - x0 - rx) / rx) ** 2 + ((yy - y0 - ry) / ry) ** 2 <= 1
        else:
            seed = draw(st.integers(0, 2 ** 32 - 1))
            out[y0:y1, x0:x1] |= np.random.default_rng(seed).random((y1 - y0, x1 - x0)) < 0.3
    return out


def masks(max_side: int = 200):
    return st.one_of(shape_masks(max_side), run_masks(max_side))


def png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def single_png(flags: np.ndarray, style: str) -> bytes:
    """A single-instance mask PNG as Labelbox or a user may give it."""
    if style == "white":  # L, 0 / 255
        return png(flags.astype(np.uint8) * 255)
    if style == "binary":  # L, 0 / 1 (what the SDK imports)
        return png(flags.astype(np.uint8))
    if style == "rgb":
        return png(np.where(flags[..., None], np.uint8(255), np.uint8(0)).repeat(3, axis=2))
    if style == "transparent":  # white on transparent, as older Labelbox exports
        rgba = np.zeros(flags.shape + (4,), dtype=np.uint8)
        rgba[flags] = 255
        rgba[~flags, :3] = 255  # transparent pixels keep a white colour: alpha decides
        return png(rgba)
    raise ValueError(style)


STYLES = ["white", "binary", "rgb", "transparent"]


def composite(labels: np.ndarray, colors: list[tuple[int, int, int]], alpha: bool = False
              ) -> bytes:
    """A composite PNG: pixel value i > 0 of ``labels`` painted ``colors[i - 1]``."""
    rgb = np.zeros(labels.shape + (3,), dtype=np.uint8)
    for i, c in enumerate(colors, 1):
        rgb[labels == i] = c
    if alpha:
        return png(np.concatenate([rgb, np.full(labels.shape + (1,), 255, np.uint8)], axis=2))
    return png(rgb)
