"""What the outbox holds: work-item states, incoming events, work items, batches.

Frozen dataclasses; those read from storage are built from a row by column name
(``WorkItem.from_row``), never by position. Payloads are opaque bytes: the outbox knows nothing
of Label Studio or Labelbox formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Mapping

import orjson

from labelbridge.model.times import parse_timestamp  # noqa: F401 (versions are ordered by it)


class State(StrEnum):
    """A work item's state: pending -> in_flight -> delivered | failed; superseded and skipped
    end items that need no delivery."""
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    FAILED = "failed"          # a dead letter, kept with the reason
    SUPERSEDED = "superseded"  # a newer version (or a delete) made it moot
    SKIPPED = "skipped"        # nothing to do


STATES = tuple(State)


class Kind(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"
    IGNORED = "ignored"        # logged, never delivered (a skipped task, an empty result)


class Outcome(StrEnum):
    """What became of an event in the log."""
    QUEUED = "queued"
    SUPERSEDED = "superseded"
    SKIPPED = "skipped"
    IGNORED = "ignored"


# The first incarnation of Label Studio annotation N is key N; a later one (an id reused after
# a deletion) is N + k * INCARNATION_STEP. Label Studio ids stay far below it.
INCARNATION_STEP = 1 << 40


def ls_annotation_id(key: int) -> int:
    """Label Studio's annotation id of an outbox annotation key."""
    return key % INCARNATION_STEP


def loads(text: str | bytes | None) -> Any:
    """A JSON column (None stays None)."""
    return None if text is None else orjson.loads(text)


@dataclass(frozen=True)
class IncomingEvent:
    kind: Literal["upsert", "delete", "ignored"]
    annotation_id: int
    project_id: int | None
    task_id: int | None
    updated_at: str | None
    payload: bytes
    source: str
    reason: str | None = None
    label_config_hash: str | None = None
    # When the annotation was created (ISO 8601). Label Studio on SQLite reuses the ids of
    # deleted annotations; the creation time tells a new annotation from an old one.
    incarnation: str | None = None


@dataclass(frozen=True)
class AppendResult:
    accepted: int
    duplicates: int
    ignored: int
    superseded: int


@dataclass(frozen=True)
class WorkItem:
    id: int
    kind: Literal["upsert", "delete"]
    annotation_id: int
    project_id: int | None
    task_id: int | None
    updated_at: str | None
    payload: bytes
    attempts: int
    label_config_hash: str | None
    data_row: dict | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkItem:
        return cls(id=row["id"], kind=row["kind"], annotation_id=row["annotation_id"],
                   project_id=row["project_id"], task_id=row["task_id"],
                   updated_at=row["updated_at"], payload=bytes(row["payload"]),
                   attempts=row["attempts"], label_config_hash=row["label_config_hash"],
                   data_row=loads(row["data_row"]))


@dataclass(frozen=True)
class Batch:
    """Claimed work: in flight, held by ``owner`` until ``lease_until`` (renewed while it is
    delivered). ``attempts`` counts its claims and take-overs."""
    id: int
    items: list[WorkItem]
    import_name: str | None
    attempts: int = 1
    owner: str | None = None
    lease_until: float | None = None


@dataclass(frozen=True)
class Delivery:
    """What one import delivered for one in-flight item (``Outbox.record_deliveries``);
    ``refused``: why the rest of its lines were not (the item is then a dead letter, though
    what was delivered is recorded)."""
    item_id: int
    annotation_id: int
    data_row: dict
    uuids: list[str]
    regions: list[tuple[str, str, str | None]]  # (ls_region_id, uuid, lb_feature_id)
    refused: str | None = None
