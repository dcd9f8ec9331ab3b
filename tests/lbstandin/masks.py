"""Masks in the stand-in: the mask PNGs it serves, and how it validates imported mask lines.

Served (``LabelboxStandIn.add_mask``) at the paths real exports show: single instance
``/api/v1/projects/{project}/annotations/{feature}/index/1/mask``, composite
``/api/v1/tasks/{task}/masks/{mask}/index/1``. Like Labelbox they need
``Authorization: Bearer <api key>``: without it (or with another key) HTTP 401
``{"message": "Unauthorized"}``. Each download counts as ``calls["maskFile"]``; faults match the
name ``maskFile``.

An imported ``"mask"`` must be exactly one of the documented shapes:
``{"png": <base64>}`` (what ``NDJsonConverter`` writes: a grayscale PNG of 0 and 1, as the
SDK's own reader demands), ``{"imBytes": <base64 PNG>, "colorRGB": [r, g, b]}`` (composite) or
``{"instanceURI": <url>, "colorRGB": [r, g, b]}``. The PNG must be valid base64, a PNG, of the
data row's size (when its media attributes give one) and hold at least one pixel of the mask:
value 1, or the colour. Failures are ``InvalidAnnotation`` lines naming the field.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Callable

import numpy as np
from PIL import Image

Fetch = Callable[[str], "bytes | None"]


class MaskLineError(Exception):
    pass


def _png(field: str, data: object) -> Image.Image:
    if not isinstance(data, str):
        raise MaskLineError(f"mask.{field} must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MaskLineError(f"mask.{field} is not valid base64") from None
    if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        raise MaskLineError(f"mask.{field} is not a PNG image")
    try:
        im = Image.open(io.BytesIO(raw))
        im.load()
    except Exception as exc:  # noqa: BLE001 - any decode failure is the client's
        raise MaskLineError(f"mask.{field} is not a readable PNG ({exc})") from None
    return im


def _color(value: object) -> tuple[int, int, int]:
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255
                       for c in value)):
        raise MaskLineError(f"mask.colorRGB must be [r, g, b] integers 0..255, got {value!r}")
    return value[0], value[1], value[2]


def check_mask(value: object, media: dict, fetch: Fetch) -> None:
    """Raise ``MaskLineError`` unless ``value`` is a valid imported mask for this data row."""
    if not isinstance(value, dict):
        raise MaskLineError("mask must be an object")
    keys = set(value)
    if keys == {"png"}:
        im, color, field = _png("png", value["png"]), None, "png"
    elif keys == {"imBytes", "colorRGB"}:
        im, color, field = _png("imBytes", value["imBytes"]), _color(value["colorRGB"]), "imBytes"
    elif keys == {"instanceURI", "colorRGB"}:
        color, field = _color(value["colorRGB"]), "instanceURI"
        url = value["instanceURI"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise MaskLineError(f"mask.instanceURI must be an http(s) URL, got {url!r}")
        raw = fetch(url)
        if raw is None:
            raise MaskLineError(f"mask.instanceURI {url} could not be downloaded")
        im = _png("instanceURI", base64.b64encode(raw).decode())
    else:
        raise MaskLineError("mask must be {png} or {imBytes, colorRGB} or {instanceURI, "
                            f"colorRGB}}; got keys {sorted(keys)}")
    width, height = media.get("width"), media.get("height")
    if width and height and im.size != (width, height):
        raise MaskLineError(f"mask.{field} is {im.size[0]}x{im.size[1]}, the data row's image is "
                            f"{width}x{height}")
    if color is None:
        if im.mode not in ("1", "L"):
            raise MaskLineError(f"mask.png must be a grayscale 0/1 PNG, not mode {im.mode}")
        arr = np.asarray(im.convert("L"))
        top = int(arr.max(initial=0))
        if top > 1:
            raise MaskLineError(f"mask.png must hold 0 and 1 only (binary mask); found {top}")
        if top == 0:
            raise MaskLineError("mask.png has no foreground pixel")
        return
    rgb = np.asarray(im.convert("RGB"))
    if not np.all(rgb == np.array(color, dtype=np.uint8), axis=-1).any():
        raise MaskLineError(f"mask.{field} has no pixel of colorRGB {list(color)}")


class MaskFiles:
    """The mask PNGs the stand-in serves, by URL path."""

    def __init__(self) -> None:
        self._by_path: dict[str, bytes] = {}

    def add(self, path: str, png: bytes) -> None:
        self._by_path[path] = png

    def get(self, path: str) -> bytes | None:
        return self._by_path.get(path)
