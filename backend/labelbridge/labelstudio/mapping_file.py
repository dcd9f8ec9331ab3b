"""The mapping file (``LABELBRIDGE_MAPPING``, see ``configs/mapping.example.yaml``): names a
user maps by hand between Labelbox features and Label Studio controls, and conversion options,
checked when read so that a wrong entry is refused with its place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

RotatedBoxes = Literal["enclosing_box", "polygon"]


class MappingError(ValueError):
    """The label config or the mapping file cannot be used; the message says where."""


@dataclass
class Overrides:
    objects: list[dict] = field(default_factory=list)
    classifications: list[dict] = field(default_factory=list)
    relations: list[dict] = field(default_factory=list)
    rotated_boxes: RotatedBoxes = "enclosing_box"
    source: str = "<none>"

    @classmethod
    def load(cls, path: Path | None) -> Overrides:
        if path is None:
            return cls()
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise MappingError(f"{path}: cannot read mapping: {exc}") from None
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<mapping>") -> Overrides:
        if not isinstance(raw, dict):
            raise MappingError(f"{source}: the mapping must be a YAML mapping at the top level")
        unknown = set(raw) - {"objects", "classifications", "relations", "options"}
        if unknown:
            raise MappingError(f"{source}: unknown top-level keys {sorted(unknown)}; "
                               "allowed: objects, classifications, relations, options")
        out = cls(source=source)
        for key, required in (("objects", ("labelbox", "control")),
                              ("classifications", ("labelbox", "control")),
                              ("relations", ("labelbox",))):
            entries = raw.get(key) or []
            if not isinstance(entries, list):
                raise MappingError(f"{source}: '{key}' must be a list")
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    raise MappingError(f"{source}: {key}[{i}] must be a mapping")
                missing = [k for k in required if not entry.get(k)]
                if missing:
                    raise MappingError(f"{source}: {key}[{i}] needs {', '.join(missing)}")
                for sub in ("answers", "answer_schema_ids"):
                    if key == "classifications" and entry.get(sub) is not None \
                            and not isinstance(entry[sub], dict):
                        raise MappingError(f"{source}: {key}[{i}].{sub} must be a mapping")
                sid = entry.get("schema_id")
                if sid is not None and not (isinstance(sid, str) and len(sid) == 25):
                    raise MappingError(f"{source}: {key}[{i}].schema_id must be a Labelbox "
                                       f"feature schema id (25 characters), got {sid!r}")
            setattr(out, key, [dict(e) for e in entries])
        options = raw.get("options") or {}
        rotated = options.get("rotated_boxes", "enclosing_box")
        if rotated not in ("enclosing_box", "polygon"):
            raise MappingError(f"{source}: options.rotated_boxes must be enclosing_box or polygon, "
                               f"got {rotated!r}")
        out.rotated_boxes = rotated
        return out
