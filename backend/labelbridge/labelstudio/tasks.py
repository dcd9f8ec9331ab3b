"""Label Studio task <-> Labelbox data row identity.

A task names its data row through ``data.global_key`` or ``data.data_row_id`` (what
``labelbridge convert lb2ls`` writes), or through its object URL (``data.image`` etc., the
value of the label config's object tag) equal to the export's ``row_data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labelbridge.labelstudio.mapping import Mapping
from labelbridge.model.regions import DataRowRef

GLOBAL_KEY = "global_key"
DATA_ROW_ID = "data_row_id"


@dataclass(frozen=True, slots=True)
class TaskKeys:
    global_key: str | None
    data_row_id: str | None
    url: str | None

    def get(self, kind: str) -> str | None:
        return getattr(self, kind)


def object_fields(mapping: Mapping) -> list[str]:
    """Task data fields the label config's objects read (``$image`` -> ``image``)."""
    fields = []
    for obj in mapping.config.objects:
        if obj.value.startswith("$") and obj.value[1:] not in fields:
            fields.append(obj.value[1:])
    return fields


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def task_keys(data: dict, fields: list[str]) -> TaskKeys:
    url = next((u for f in fields if (u := _str(data.get(f)))), None)
    return TaskKeys(_str(data.get(GLOBAL_KEY)), _str(data.get(DATA_ROW_ID)), url)


def data_row_ref(data: dict) -> DataRowRef:
    """What the task itself says about its data row (may be empty)."""
    return DataRowRef(id=_str(data.get(DATA_ROW_ID)), global_key=_str(data.get(GLOBAL_KEY)))


def task_text(data: dict, mapping: Mapping) -> str | None:
    """The text a Text object shows, when the task holds it inline (for span text)."""
    for obj in mapping.config.objects:
        if obj.tag == "Text" and obj.value.startswith("$") \
                and str(obj.attr.get("valueType", "")).lower() != "url":
            text = data.get(obj.value[1:])
            if isinstance(text, str):
                return text
    return None


_MEDIA = {"Image": "image/", "Text": "text/", "HyperText": "text/", "Video": "video/",
          "Audio": "audio/", "AudioPlus": "audio/"}


def media_mismatch(mapping: Mapping, mime_type: str | None) -> str | None:
    """Why a data row of this MIME type does not fit the config's first object, or None."""
    objects = mapping.config.objects
    if not mime_type or not objects:
        return None
    prefix = _MEDIA.get(objects[0].tag)
    if prefix and not mime_type.startswith(prefix):
        return f"a {mime_type} data row does not fit <{objects[0].tag}>"
    return None


def ls_task(data_row: DataRowRef, field: str, predictions: list[dict]) -> dict:
    """A Label Studio task to import: object value, identity fields and predictions."""
    data: dict[str, Any] = {field: data_row.row_data}
    if data_row.global_key:
        data[GLOBAL_KEY] = data_row.global_key
    if data_row.id:
        data[DATA_ROW_ID] = data_row.id
    return {"data": data, "predictions": predictions}
