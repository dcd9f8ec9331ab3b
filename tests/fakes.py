"""Fakes at network seams (STYLE.md: exact Protocol, failures on demand, calls recorded, no
Labelbox rules; the Labelbox stand-in has those).

``FakeSink(handler)`` is a ``labelbridge.model.sink.Sink``: every call is recorded as a
``SinkCall`` and handed to ``handler``, which answers it (an ``ImportOutcome`` for an import,
the ``LabelRef``s on the data row for a removal) or raises a ``TransientError`` /
``PermanentError``. Without a handler every line is accepted and no data row has labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from labelbridge.model.sink import ImportOutcome, LabelRef, LineStatus


@dataclass
class SinkCall:
    op: str                                  # "import_lines" | "remove_labels"
    name: str | None = None
    lines: list[dict] = field(default_factory=list)
    resume: bool = False
    data_row: dict | None = None
    annotation_id: int | None = None
    uuids: list[str] = field(default_factory=list)
    offered: list[LabelRef] = field(default_factory=list)   # labels shown to ``choose``
    removed: list[str] = field(default_factory=list)        # the ids ``choose`` picked


def accept_all(call: SinkCall) -> Any:
    if call.op == "import_lines":
        return ImportOutcome(call.name, {line["uuid"]: LineStatus(line["uuid"], True)
                                         for line in call.lines})
    return []


class FakeSink:
    def __init__(self, handler: Callable[[SinkCall], Any] = accept_all, *,
                 replaces_by_uuid: bool = True) -> None:
        self.handler = handler
        self.replaces_by_uuid = replaces_by_uuid
        self.calls: list[SinkCall] = []

    def import_lines(self, name: str, lines: list[dict], resume: bool = False) -> ImportOutcome:
        call = SinkCall("import_lines", name=name, lines=list(lines), resume=resume)
        self.calls.append(call)
        return self.handler(call)

    def remove_labels(self, data_row: dict, choose: Callable[[list[LabelRef]], Iterable[str]],
                      annotation_id: int, uuids: list[str]) -> list[str]:
        call = SinkCall("remove_labels", data_row=data_row, annotation_id=annotation_id,
                        uuids=list(uuids))
        self.calls.append(call)
        call.offered = list(self.handler(call))
        call.removed = list(choose(call.offered))
        return call.removed

    def imports(self) -> list[SinkCall]:
        return [c for c in self.calls if c.op == "import_lines"]

    def removals(self) -> list[SinkCall]:
        return [c for c in self.calls if c.op == "remove_labels"]
