"""Bookkeeping beside the queue: label configs, reconciliation cursors, rejected webhook bodies,
retention, and what ``labelbridge outbox status`` / ``/metrics`` show.

Status costs the same however long the history: counts come from the tallies the schema's
triggers keep, the rest from indexed lookups of current work (pending, open batches).
"""

from __future__ import annotations

import time

import orjson

from labelbridge.groundtruth.outbox.model import STATES, Outcome, State
from labelbridge.groundtruth.outbox.storage import Storage, column

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
            tallies = {r["name"]: r["n"] for r in tx.all("tallies")}
            due = tx.one("count_due", now=t, pending=State.PENDING)["n"]
            oldest = tx.one("oldest_pending", pending=State.PENDING)
            next_due = tx.one("earliest_due", pending=State.PENDING)["at"]
            next_retry = tx.one("next_retry_at", now=t, pending=State.PENDING)["at"]
            batches = [_open_batch(r, t) for r in tx.all("open_batches",
                                                          in_flight=State.IN_FLIGHT)]
            dups = tx.one("counter", name="duplicates")
            pruned = tx.one("counter", name="pruned")
        counts = {str(s): tallies.get(f"items:{s}", 0) for s in STATES}
        counts["ignored"] = tallies.get(f"events:{Outcome.IGNORED}", 0)
        return {
            "counts": counts,
            "due": due,
            "in_doubt": sum(b["items"] for b in batches if b["import_name"]),
            "oldest_pending_age_s": None if oldest is None else max(0.0, t - oldest["created_at"]),
            "next_attempt_at": next_due,
            "next_retry_at": next_retry,
            "dead_letters": counts[State.FAILED],
            "rejected": tallies.get("rejected", 0),
            "events_total": tallies.get("events", 0),
            "duplicates_total": dups["value"] if dups else 0,
            "pruned_total": pruned["value"] if pruned else 0,
            "batches": batches,
            "stuck": sum(1 for b in batches if b["state"] == "abandoned"),
            "oldest_in_flight_age_s": max((b["age_s"] for b in batches), default=None),
        }

    def prune(self, before: float, limit: int = 500) -> int:
        """Retention, one short transaction: at most ``limit`` finished items (delivered,
        superseded, skipped) last changed before ``before`` go with their events, and as many
        ignored events, closed batches and rejected bodies older than that. Never pending, in
        flight or failed work, nor the annotation index. Returns how many rows went; call again
        while it returns ``limit`` or more."""
        with self._db.transaction() as tx:
            rows = tx.all("prunable_items", cutoff=before, limit=limit)
            tx.run("delete_items", ids=column(rows, "id"))
            tx.run("delete_events", ids=column(rows, "event_id"))
            n = len(rows)
            n += tx.run("prune_ignored_events", cutoff=before, limit=limit)
            n += tx.run("prune_batches", cutoff=before, limit=limit)
            n += tx.run("prune_rejected", cutoff=before, limit=limit)
            if n:
                tx.run("add_to_counter", name="pruned", n=n)
        return n

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


def _open_batch(row, now: float) -> dict:
    """A claimed batch as ``status()["batches"]`` shows it: ``leased`` (a worker holds it),
    ``waiting`` (given back until a retry), ``abandoned`` (its lease ended: the next worker
    takes it over)."""
    until = row["lease_until"] or 0.0
    state = ("leased" if row["owner"] and until > now else "waiting" if until > now
             else "abandoned")
    return {"batch": row["id"], "import_name": row["import_name"], "owner": row["owner"],
            "items": row["items"], "state": state, "attempts": row["attempts"],
            "age_s": max(0.0, now - row["created_at"]), "lease_left_s": until - now,
            "last_error": row["last_error"]}
