"""The id rules, in one place (see DESIGN.md, "Id rules").

* Labelbox -> Label Studio: the region id is the Labelbox ``feature_id``.
* Label Studio -> Labelbox: the NDJSON ``uuid`` is ``uuid5(LABELBRIDGE_NAMESPACE, ls_region_id)``.
"""

from __future__ import annotations

import hashlib
import re
import uuid

# Never change: every uuid ever sent to Labelbox was derived from it.
LABELBRIDGE_NAMESPACE = uuid.UUID("5b1d4e0c-7a53-4c8e-9f65-1abe1b0d9e11")

_REGION_ID = re.compile(r"[A-Za-z0-9_-]+")


def is_valid_region_id(value: str) -> bool:
    """Label Studio keeps ids only up to the first ``#``; we allow a safe alphabet only."""
    return bool(_REGION_ID.fullmatch(value))


def clean_region_id(value: str) -> str:
    """The id as Label Studio serializes it: everything before the first ``#``."""
    return value.split("#", 1)[0]


def region_id_for_feature(feature_id: str | None, *fallback_parts: object) -> str:
    """Region id for a Labelbox feature: the feature id itself when it is a valid id.

    Exports always carry a cuid, but a hand-made or partial export may not; then the id is
    derived deterministically from ``fallback_parts`` (e.g. data row id and position), so the
    same input gives the same id on every run.
    """
    if feature_id and is_valid_region_id(feature_id):
        return feature_id
    seed = "\x1f".join(str(p) for p in (feature_id, *fallback_parts))
    return "lb" + hashlib.sha1(seed.encode("utf-8")).hexdigest()[:23]


def ndjson_uuid(ls_region_id: str) -> str:
    """The Labelbox annotation uuid for a Label Studio region id."""
    return str(uuid.uuid5(LABELBRIDGE_NAMESPACE, clean_region_id(ls_region_id)))


def relation_uuid(source_region_id: str, target_region_id: str, name: str | None) -> str:
    """Label Studio relations have no id; theirs is derived from what they connect."""
    key = f"rel:{clean_region_id(source_region_id)}>{clean_region_id(target_region_id)}:{name or ''}"
    return str(uuid.uuid5(LABELBRIDGE_NAMESPACE, key))
