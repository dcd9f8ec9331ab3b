"""Events and helpers the outbox tests share."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from labelbridge.groundtruth.outbox import DEFAULT_LEASE_S, IncomingEvent, Outbox

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


def ts(n: float) -> str:
    """Label Studio's spelling of T0 + n seconds."""
    return (T0 + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def up(aid: int, n: float | str, task: int | None = None, project: int = 1,
       source: str = "webhook", payload: bytes | None = None,
       config: str | None = None) -> IncomingEvent:
    updated = n if isinstance(n, str) else ts(n)
    return IncomingEvent("upsert", aid, project, aid * 10 if task is None else task, updated,
                         payload if payload is not None else f"a{aid}@{updated}".encode(),
                         source, label_config_hash=config)


def dele(aid: int, project: int | None = 1, source: str = "webhook") -> IncomingEvent:
    return IncomingEvent("delete", aid, project, None, None, b"", source)


def ign(aid: int, n: float | None, reason: str = "was_cancelled: skipped task",
        task: int | None = None) -> IncomingEvent:
    return IncomingEvent("ignored", aid, 1, aid * 10 if task is None else task,
                         None if n is None else ts(n), b"{}", "webhook", reason=reason)


def states(ob: Outbox, aid: int) -> list[tuple[str, str, str | None]]:
    """(kind, state, updated_at) of an annotation's items, oldest first."""
    return [(i["kind"], i["state"], i["updated_at"])
            for i in reversed(ob.items(limit=10_000)) if i["annotation_id"] == aid]


def after_leases() -> float:
    """A moment when every lease taken now has run out (a crashed worker's, say)."""
    return time.time() + DEFAULT_LEASE_S + 1


def claim_all(ob: Outbox, limit: int = 100, now: float | None = None):
    batch = ob.claim_batch(limit, now=now)
    assert batch is not None
    return batch
