"""Bookkeeping beside the queue: label configs, reconciliation cursors, rejected webhook bodies,
and what ``labelbridge outbox status`` / ``/metrics`` show."""

from __future__ import annotations

import time

import orjson

from labelbridge.groundtruth.outbox.model import STATES, Outcome, State
from labelbridge.groundtruth.outbox.storage import Storage

REJECTED_BODY_CAP = 5 * 1024 * 1024


class Bookkeeping:
    _db: Storage

    # ----- label configs, cursors, rejected bodies -----------------------------------------
    def put_label_config(self, hash: str, xml: str) -> None:
        with self._db.transaction() as tx:
            tx.run("put_label_config", hash=hash, xml=xml, now=time.time())

    def get_label_config(self, hash: str) -> str | None:
        row = self._db.one("get_label_config", hash=hash)
        return row["xml"] if row else None

    def get_cursor(self, name: str) -> str | None:
        row = self._db.one("get_cursor", name=name)
        return row["value"] if row else None

    def set_cursor(self, name: str, value: str) -> None:
        with self._db.transaction() as tx:
            tx.run("set_cursor", name=name, value=value, now=time.time())

    def reject(self, body: bytes, reason: str, headers: dict[str, str]) -> int:
        """Keep a rejected webhook body (first 5 MB) for inspection; returns its id."""
        body = bytes(body or b"")
        kept = body[:REJECTED_BODY_CAP]
        with self._db.transaction() as tx:
            return tx.one("insert_rejected", now=time.time(), reason=reason,
                          headers=orjson.dumps(dict(headers or {})).decode(), body=kept,
                          body_size=len(body), truncated=int(len(kept) < len(body)))["id"]

    def rejected(self, limit: int = 50) -> list[dict]:
        """Newest first: id, received_at, reason, headers, body, body_size, truncated."""
        return [{"id": r["id"], "received_at": r["received_at"], "reason": r["reason"],
                 "headers": orjson.loads(r["headers"]), "body": bytes(r["body"]),
                 "body_size": r["body_size"], "truncated": bool(r["truncated"])}
                for r in self._db.all("rejected_newest", limit=limit)]

    # ----- inspection ----------------------------------------------------------------------
    def status(self, now: float | None = None) -> dict:
        t = time.time() if now is None else now
        with self._db.snapshot() as tx:
            counts = {str(s): 0 for s in STATES}
            for r in tx.all("count_items_by_state"):
                counts[r["state"]] = r["n"]
            counts["ignored"] = tx.one("count_events_with_outcome", outcome=Outcome.IGNORED)["n"]
            pending = tx.one("pending_summary", now=t, pending=State.PENDING)
            next_retry = tx.one("next_retry_at", now=t, pending=State.PENDING)["at"]
            in_doubt = tx.one("count_in_doubt", in_flight=State.IN_FLIGHT)["n"]
            rejected = tx.one("count_rejected")["n"]
            events = tx.one("count_events")["n"]
            dups = tx.one("counter", name="duplicates")
        oldest = pending["oldest"]
        return {
            "counts": counts,
            "due": pending["due"] or 0,
            "in_doubt": in_doubt,
            "oldest_pending_age_s": None if oldest is None else max(0.0, t - oldest),
            "next_attempt_at": pending["next_due"],
            "next_retry_at": next_retry,
            "dead_letters": counts[State.FAILED],
            "rejected": rejected,
            "events_total": events,
            "duplicates_total": dups["value"] if dups else 0,
        }

    def items(self, state: str | None = None, limit: int = 100) -> list[dict]:
        """Work items, newest first. ``state="ignored"`` lists the ignored events of the log
        instead (they have no work item: ``id`` is None, ``last_error`` is the reason)."""
        if state is not None and state not in STATES and state != Outcome.IGNORED:
            raise ValueError(f"unknown state {state!r}; one of "
                             f"{tuple(map(str, STATES)) + ('ignored',)}")
        if state == Outcome.IGNORED:
            rows = self._db.all("list_ignored_events", ignored=Outcome.IGNORED, limit=limit)
        elif state is not None:
            rows = self._db.all("list_items_in_state", state=state, limit=limit)
        else:
            rows = self._db.all("list_items", limit=limit)
        return [dict(r) for r in rows]
