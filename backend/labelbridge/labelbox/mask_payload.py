"""Masks as an index payload carries them, and their reader for ``shapes.READERS``.

``masks.resolve_row`` replaces an export mask object's reference by ``{"width", "height",
"runs"}`` (the neutral ``Mask.runs``, zlib-compressed, base64) or by ``{"error": reason}``;
reading it back needs the standard library only, so every export reader stays light.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

from labelbridge.labelbox.errors import ExportError
from labelbridge.model.regions import Mask


def to_payload(mask: Mask) -> dict:
    return {"width": mask.width, "height": mask.height,
            "runs": base64.b64encode(zlib.compress(mask.runs, 1)).decode("ascii")}


def from_payload(value: Any) -> Mask | str:
    """The mask a resolved export object carries, or the reason it has none."""
    if not isinstance(value, dict):
        return "mask is not an object"
    if "error" in value:
        return str(value["error"])
    if "runs" not in value:
        return "mask was not fetched (read the export through the index or the converter)"
    try:
        return Mask(int(value["width"]), int(value["height"]),
                    zlib.decompress(base64.b64decode(value["runs"])))
    except (KeyError, TypeError, ValueError, zlib.error, binascii.Error) as exc:
        return f"malformed mask ({exc})"


def read_mask(value: Any, path: str, ctx: Any) -> Mask:
    """The ``shapes.READERS`` entry for masks: a resolved export object (see ``resolve_row``)."""
    got = from_payload(value)
    if isinstance(got, str):
        raise ExportError(got, path)
    if got.empty:
        raise ExportError("the mask has no pixel (none of its colour in the PNG)", path)
    return got


READERS = {"mask": ("mask", read_mask), "composite_mask": ("mask", read_mask)}
