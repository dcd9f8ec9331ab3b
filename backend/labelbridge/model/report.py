"""What a conversion kept and what it could not: counted per kind, with reasons.

Nothing is dropped silently: every skip is recorded with the feature and the data row.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_EXAMPLES = 20


@dataclass(frozen=True, slots=True)
class Loss:
    kind: str
    reason: str
    feature: str | None = None
    data_row: str | None = None

    def __str__(self) -> str:
        where = ", ".join(
            p for p in (f"feature {self.feature!r}" if self.feature else "",
                        f"data row {self.data_row}" if self.data_row else "") if p
        )
        return f"{self.kind}: {self.reason}" + (f" ({where})" if where else "")


@dataclass
class ConversionReport:
    converted: Counter[str] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: list[Loss] = field(default_factory=list)

    def ok(self, kind: str, n: int = 1) -> None:
        self.converted[kind] += n

    def loss(self, kind: str, reason: str, feature: str | None = None,
             data_row: str | None = None) -> None:
        key = (kind, reason)
        if self.skipped[key] == 0:
            log.warning("not converted: %s", Loss(kind, reason, feature, data_row))
        self.skipped[key] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(Loss(kind, reason, feature, data_row))

    def merge(self, other: ConversionReport) -> None:
        self.converted.update(other.converted)
        self.skipped.update(other.skipped)
        room = MAX_EXAMPLES - len(self.examples)
        self.examples.extend(other.examples[:max(room, 0)])

    @property
    def lossless(self) -> bool:
        return not self.skipped

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
