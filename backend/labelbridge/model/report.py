"""What a conversion kept and what it could not.

Nothing is dropped silently: every loss is a ``Loss`` naming where it happened (data row or task,
annotation, feature and region id, field path) and why. A ``ConversionReport`` counts them per
kind and reason, keeps the first few as examples, logs the first of each kind and reason once
(never one line per occurrence), and hands every occurrence to its ``sink`` (e.g. the JSON-lines
file of ``--report``).

Adapters record losses with the field path at the place they read it; the loop that knows the
row adds it once through ``scope(data_row=..., task=...)``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Final, Protocol

log = logging.getLogger(__name__)

MAX_EXAMPLES: Final = 20
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True, slots=True)
class Loss:
    kind: str                      # what was not converted: bbox, ner, radio, relationship, row...
    reason: str                    # why, without the place (so equal reasons aggregate)
    feature: str | None = None     # the feature (tool / question) name
    data_row: str | None = None    # Labelbox data row id (or global key) of the row
    field: str | None = None       # path of the field read, e.g. objects[3].bounding_box.height
    region: str | None = None      # Labelbox feature id / Label Studio region id
    task: str | None = None        # Label Studio task id
    annotation: str | None = None  # Label Studio annotation id
    source: str | None = None      # file:line of the input
    detail: str | None = None      # the values involved (not part of the aggregated reason)

    @property
    def summary(self) -> str:
        """The reason with the field's shape (indices dropped): what the console aggregates."""
        return f"{_INDEX.sub('[]', self.field)}: {self.reason}" if self.field else self.reason

    def as_dict(self) -> dict:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    def __reduce__(self) -> tuple:
        # prepare workers pickle their reports back; compiled (mypyc), a frozen class cannot be
        # rebuilt field by field as pickle's default does
        return Loss, tuple(getattr(self, f.name) for f in fields(self))

    def __str__(self) -> str:
        where = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in (
            ("feature", repr(self.feature) if self.feature else None), ("region", self.region),
            ("data_row", self.data_row), ("task", self.task), ("annotation", self.annotation),
            ("source", self.source)) if value)
        detail = f" [{self.detail}]" if self.detail else ""
        return f"{self.kind}: {self.summary}{detail}" + (f" ({where})" if where else "")


class Reporter(Protocol):
    """What adapters record into: a report, or a scope of one."""

    def ok(self, kind: str, n: int = 1) -> None: ...

    def loss(self, kind: str, reason: str, feature: str | None = None,
             data_row: str | None = None, **where: str | None) -> None: ...

    def scope(self, **where: str | None) -> Reporter: ...


@dataclass
class ConversionReport:
    converted: Counter[str] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: list[Loss] = field(default_factory=list)
    sink: Callable[[Loss], None] | None = None   # receives every loss
    announce: bool = True                        # log the first loss of each kind and reason

    def ok(self, kind: str, n: int = 1) -> None:
        self.converted[kind] += n

    def loss(self, kind: str, reason: str, feature: str | None = None,
             data_row: str | None = None, **where: str | None) -> None:
        self.record(Loss(kind, reason, feature, data_row, **where))

    def record(self, loss: Loss) -> None:
        key = (loss.kind, loss.summary)
        if self.skipped[key] == 0 and self.announce:
            log.warning("lost in conversion: %s (further ones like it are only counted)", loss)
        self.skipped[key] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(loss)
        if self.sink is not None:
            self.sink(loss)

    def scope(self, **where: str | None) -> Scope:
        return Scope(self, {k: v for k, v in where.items() if v is not None})

    def merge(self, other: ConversionReport) -> None:
        """Add another report's counts (its losses already went to its own sink)."""
        self.converted.update(other.converted)
        for key, n in other.skipped.items():
            if self.skipped[key] == 0 and self.announce:
                example = next((e for e in other.examples if (e.kind, e.summary) == key), None)
                log.warning("lost in conversion: %s (further ones like it are only counted)",
                            example or f"{key[0]}: {key[1]}")
            self.skipped[key] += n
        room = MAX_EXAMPLES - len(self.examples)
        self.examples.extend(other.examples[:max(room, 0)])

    @property
    def lossless(self) -> bool:
        return not self.skipped

    @property
    def lost(self) -> int:
        return sum(self.skipped.values())

    def rows(self) -> list[tuple[str, int, int, str]]:
        """(kind, converted, skipped, reasons) per kind, sorted by kind."""
        kinds = sorted(set(self.converted) | {k for k, _ in self.skipped})
        out = []
        for kind in kinds:
            reasons = [(r, n) for (k, r), n in self.skipped.items() if k == kind]
            out.append((kind, self.converted[kind], sum(n for _, n in reasons),
                        "; ".join(f"{r} ({n})" for r, n in sorted(reasons))))
        return out

    def as_dict(self) -> dict:
        return {
            "converted": dict(self.converted),
            "skipped": [{"kind": k, "reason": r, "count": n} for (k, r), n in self.skipped.items()],
            "examples": [str(e) for e in self.examples],
        }


@dataclass(frozen=True, slots=True)
class Scope:
    """A report seen from inside one row (or task, annotation...): what it records carries the
    scope's places unless the loss names its own."""

    report: ConversionReport
    where: dict[str, str]

    def ok(self, kind: str, n: int = 1) -> None:
        self.report.converted[kind] += n

    def loss(self, kind: str, reason: str, feature: str | None = None,
             data_row: str | None = None, **where: str | None) -> None:
        loss = Loss(kind, reason, feature, data_row, **{k: v for k, v in where.items()
                                                         if v is not None})
        filled = {k: v for k, v in self.where.items() if getattr(loss, k) is None}
        self.report.record(replace(loss, **filled) if filled else loss)

    def scope(self, **where: str | None) -> Scope:
        return Scope(self.report, {**self.where, **{k: v for k, v in where.items()
                                                     if v is not None}})
