"""A label config: its text, an outline of its tags, and label-studio-sdk's parse made on use.

The mapping and the prediction check are tables built from the config's objects and controls
(name, tag, ``toName``, labels, attributes). ``LabelConfig.parse`` reads those once from the
SDK's ``LabelInterface`` into plain ``TagOutline``s, and a ``LabelConfig`` pickles as its text and
outline alone. So a prepare worker that receives the built converter rebuilds its tables from the
outline and never imports ``label_studio_sdk`` unless a row needs the SDK's own verdict: that
import is ~0.4 s of CPU a worker (it pulls in jsonschema, faker, smart_open and google-auth),
about a fifth of what two workers spend preparing 25,000 rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from label_studio_sdk.label_interface import LabelInterface


@dataclass(frozen=True)
class TagOutline:
    """What the tables need of one object or control tag, as the SDK read it."""

    tag: str                                # as written: "RectangleLabels", "Image"
    name: str
    value: str = ""                         # an object's ``value`` ("$image")
    to_name: tuple[str, ...] = ()           # a control's objects
    labels: tuple[str, ...] = ()            # a control's label / choice values
    attr: dict[str, Any] = field(default_factory=dict)   # the tag's attributes
    label_key: str | None = None            # value key of its labels (SDK: _label_attr_name)

    @classmethod
    def of(cls, tag: Any) -> TagOutline:
        return cls(tag.tag, tag.name, getattr(tag, "value", "") or "",
                   tuple(getattr(tag, "to_name", None) or ()),
                   tuple(getattr(tag, "labels", None) or ()), dict(tag.attr or {}),
                   getattr(tag, "_label_attr_name", None))


class LabelConfig:
    def __init__(self, text: str, objects: tuple[TagOutline, ...],
                 controls: tuple[TagOutline, ...],
                 interface: LabelInterface | None = None) -> None:
        self.text = text
        self.objects = objects      # in config order, as LabelInterface.objects
        self.controls = controls    # in config order, one per name, as LabelInterface.controls
        self._interface = interface

    @classmethod
    def parse(cls, text: str) -> LabelConfig:
        """Raises what ``LabelInterface`` raises for a config it cannot parse."""
        from label_studio_sdk.label_interface import LabelInterface
        interface = LabelInterface(text)
        return cls(text, tuple(map(TagOutline.of, interface.objects)),
                   tuple(map(TagOutline.of, interface.controls)), interface)

    @property
    def interface(self) -> LabelInterface:
        """The SDK's parse (after unpickling, made again on first use)."""
        if self._interface is None:
            from label_studio_sdk.label_interface import LabelInterface
            self._interface = LabelInterface(self.text)
        return self._interface

    @property
    def parsed(self) -> bool:
        """Whether the SDK's parse has been made in this process."""
        return self._interface is not None

    def object(self, name: str) -> TagOutline | None:
        return next((o for o in self.objects if o.name == name), None)

    def __reduce__(self) -> tuple:
        return (LabelConfig, (self.text, self.objects, self.controls))
