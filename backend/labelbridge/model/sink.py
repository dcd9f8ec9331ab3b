"""The seam between ground-truth delivery and where the labels go (Labelbox, or NDJSON files).

A sink imports a batch of NDJSON lines under a name and reports one status per line; asked to
import a name again with ``resume=True`` it continues with the import of that name if one exists
(it never makes a second one). It removes labels it created when an annotation changes or goes
away. Its failures are one of these kinds:

    RuntimeError
     ├── TransientError      worth retrying later (rate limit, 5xx, timeout, network)
     └── PermanentError      retrying will not help; the message is the sink's own
          └── ImportRejected the import as a whole was refused and nothing of it exists in the
                             sink (the same lines may go again, alone or in another batch)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol


class TransientError(RuntimeError):
    """Worth retrying later."""


class PermanentError(RuntimeError):
    """Retrying will not help; the message is Labelbox's."""


class ImportRejected(PermanentError):
    """The import as a whole was refused; nothing of it exists in the sink."""


@dataclass(frozen=True)
class LineStatus:
    uuid: str
    ok: bool
    errors: tuple[str, ...] = ()


@dataclass
class ImportOutcome:
    name: str
    statuses: dict[str, LineStatus] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0


@dataclass(frozen=True)
class LabelRef:
    id: str
    created_at: float


class Sink(Protocol):
    # True when importing the same uuids again replaces what was there (no cleanup needed).
    replaces_by_uuid: bool

    def import_lines(self, name: str, lines: list[dict], resume: bool = False) -> ImportOutcome:
        ...

    def remove_labels(self, data_row: dict, choose: Callable[[list[LabelRef]], Iterable[str]],
                      annotation_id: int, uuids: list[str]) -> list[str]:
        """Remove the labels ``choose`` picks among ours on the data row (oldest first): those
        of Label Studio annotation ``annotation_id``, whose regions had these ``uuids``."""
        ...
