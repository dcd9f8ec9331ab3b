"""A stateful property test: random interleavings of webhook events and worker outcomes
against a simple model, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule, run_state_machine_as_test)

from labelbridge.groundtruth.outbox import (DEFAULT_LEASE_S, AppendResult, IncomingEvent, Outbox,
                                            parse_timestamp)

from tests.helpers import raw_rows


BASE = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


TASK_OF = {1: 10, 2: 10, 3: 10, 4: 12}  # annotations 1, 2 and 3 share a task


def version_ts(v: int, spelling: int) -> str:
    """Several spellings of one instant; string order disagrees with time order across them."""
    t = BASE + timedelta(seconds=37 * v, microseconds=113 * v)
    if spelling == 0:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if spelling == 1:
        return t.isoformat()
    if spelling == 2:
        return t.astimezone(timezone(timedelta(hours=5))).isoformat()
    return t.astimezone(timezone(timedelta(hours=-3))).strftime("%Y-%m-%dT%H:%M:%S.%f-03:00")


class OutboxMachine(RuleBasedStateMachine):
    """Random interleavings of webhook events and worker outcomes against a simple model."""

    batches = Bundle("batches")

    @staticmethod
    def new_location():
        """(where a fresh outbox lives, how to remove it): a SQLite file here."""
        folder = tempfile.mkdtemp(prefix="outbox-prop-")
        return Path(folder) / "o.sqlite3", lambda: shutil.rmtree(folder, ignore_errors=True)

    @initialize()
    def setup(self):
        self.path, self.remove = self.new_location()
        self.ob = Outbox(self.path)
        self.keys: set = set()                    # idempotency keys sent so far
        self.history: list[IncomingEvent] = []     # every event sent (for resends)
        self.upserts: dict[int, set[int]] = {}     # accepted upsert versions per annotation
        self.deleted: set[int] = set()
        self.delivered: dict[int, list[int]] = {}  # delivered versions, in delivery order
        self.delete_delivered: set[int] = set()
        self.items_expected = 0                    # accepted upserts + deletes
        self.events_expected = 0                   # non-duplicate events
        self.open: dict[int, list] = {}           # batch id -> unresolved WorkItems
        self.named: set[int] = set()               # open batches with an import name
        self.failed = False                        # dead letters may exist

    def teardown(self):
        try:
            if hasattr(self, "ob"):
                self.drain_and_check()
                self.ob.close()
        finally:
            if hasattr(self, "remove"):
                self.remove()

    # -- the model of append
    def expect(self, ev: IncomingEvent) -> str:
        if ev.kind == "delete":
            key = ("d", ev.annotation_id)
        elif ev.updated_at is not None:
            key = ("u", ev.annotation_id, parse_timestamp(ev.updated_at))
        else:
            key = ("i", ev.annotation_id, ev.reason)
        if key in self.keys:
            return "duplicate"
        self.keys.add(key)
        self.events_expected += 1
        if ev.kind == "ignored" or (ev.kind == "upsert" and ev.annotation_id in self.deleted):
            return "ignored"
        self.items_expected += 1
        if ev.kind == "delete":
            self.deleted.add(ev.annotation_id)
        else:
            self.upserts.setdefault(ev.annotation_id, set()).add(
                parse_timestamp(ev.updated_at))
        return "accepted"

    def send(self, events: list[IncomingEvent], use_async: bool = False) -> None:
        outcomes = [self.expect(ev) for ev in events]
        if use_async:
            async def go():
                return await self.ob.append_async(events)
            res = asyncio.run(go())
        else:
            res = self.ob.append(events)
        assert (res.accepted, res.duplicates, res.ignored) == (
            outcomes.count("accepted"), outcomes.count("duplicate"), outcomes.count("ignored"))
        self.history.extend(events)

    # -- events
    annotation = st.sampled_from(sorted(TASK_OF))
    event = st.one_of(
        st.builds(lambda a, v, s, src: IncomingEvent(
            "upsert", a, 1, TASK_OF[a], version_ts(v, s), b"v%d" % v, src),
            annotation, st.integers(0, 6), st.integers(0, 3),
            st.sampled_from(["webhook", "reconcile"])),
        st.builds(lambda a: IncomingEvent("delete", a, 1, None, None, b"", "webhook"),
                  annotation),
        st.builds(lambda a, v: IncomingEvent("ignored", a, 1, TASK_OF[a], version_ts(v, 0),
                                             b"", "webhook", reason="was_cancelled"),
                  annotation, st.integers(0, 6)),
    )

    @rule(ev=event)
    def append_one(self, ev):
        self.send([ev])

    @rule(evs=st.lists(event, min_size=2, max_size=5), use_async=st.booleans())
    def append_many(self, evs, use_async):
        self.send(evs, use_async)

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def resend(self, data):
        ev = data.draw(st.sampled_from(self.history))
        res = self.ob.append([IncomingEvent(ev.kind, ev.annotation_id, ev.project_id,
                                            ev.task_id, ev.updated_at, ev.payload, "cli",
                                            ev.reason)])
        assert res == AppendResult(0, 1, 0, 0)

    # -- the worker
    @rule(target=batches, limit=st.integers(1, 4))
    def claim(self, limit):
        in_flight = {i.annotation_id for items in self.open.values() for i in items}
        b = self.ob.claim_batch(limit)
        if b is None:
            return None
        assert 1 <= len(b.items) <= limit
        tasks = [i.task_id for i in b.items]
        assert len(set(tasks)) == len(tasks), "two items of one task in a batch"
        for i in b.items:
            assert i.annotation_id not in in_flight, "claimed an annotation already in flight"
            if i.kind == "upsert":
                assert i.annotation_id not in self.deleted
                # a claimable upsert is always the newest version received
                assert parse_timestamp(i.updated_at) == max(self.upserts[i.annotation_id])
                assert i.payload.startswith(b"v")
            else:
                assert i.annotation_id in self.deleted
        self.open[b.id] = list(b.items)
        return b.id

    @rule(bid=batches, data=st.data())
    def resolve(self, bid, data):
        items = self.open.get(bid)
        if not items:
            return
        chosen = data.draw(st.lists(st.sampled_from(items), unique_by=lambda i: i.id,
                                    min_size=1))
        for item in chosen:
            outcome = data.draw(st.sampled_from(["delivered", "delivered", "retry", "failed"]))
            if outcome == "delivered":
                assert self.ob.mark_delivered([item.id], bid) == 1
                if item.kind == "upsert":
                    seq = self.delivered.setdefault(item.annotation_id, [])
                    v = parse_timestamp(item.updated_at)
                    assert not seq or v > seq[-1], "delivered an older version after a newer"
                    seq.append(v)
                    self.ob.record_delivered(item.annotation_id, {"globalKey": "k"},
                                             f"imp-{bid}", ["u"])
                else:
                    self.delete_delivered.add(item.annotation_id)
            elif outcome == "retry":
                assert self.ob.mark_retry([item.id], "429", 0) == 1
            else:
                assert self.ob.mark_failed([item.id], "400") == 1
                self.failed = True
            items.remove(item)
        if not items:
            del self.open[bid]
            self.named.discard(bid)

    @rule(bid=batches)
    def name_import(self, bid):
        if bid in self.open and bid not in self.named:
            self.ob.set_import_name(bid, f"import-{bid}")
            self.named.add(bid)

    @precondition(lambda self: self.failed)
    @rule()
    def requeue(self):
        self.ob.requeue()
        self.failed = False

    @precondition(lambda self: self.open)
    @rule()
    def crash_and_recover(self):
        self.ob.close()
        self.ob = Outbox(self.path)
        recovered = self.ob.recover(now=time.time() + DEFAULT_LEASE_S + 1)
        assert {b.id for b in recovered} == self.named
        for b in recovered:
            assert b.import_name == f"import-{b.id}"
            assert {i.id for i in b.items} == {i.id for i in self.open[b.id]}
        self.open = {bid: items for bid, items in self.open.items() if bid in self.named}

    # -- invariants
    def rows(self):
        return raw_rows(self.ob, "SELECT id, kind, annotation_id, updated_us, state, "
                                 "superseded_by FROM items")

    @invariant()
    def one_pending_one_in_flight(self):
        if not hasattr(self, "ob"):
            return
        per: dict[tuple[int, str], int] = {}
        for _, _, aid, _, state, _ in self.rows():
            per[(aid, state)] = per.get((aid, state), 0) + 1
        for (aid, state), n in per.items():
            if state in ("pending", "in_flight"):
                assert n <= 1, f"annotation {aid}: {n} items {state}"

    @invariant()
    def nothing_lost_and_duplicates_create_nothing(self):
        if not hasattr(self, "ob"):
            return
        rows = self.rows()
        assert len(rows) == self.items_expected
        st_ = self.ob.status()
        assert st_["events_total"] == self.events_expected
        by_version = {(aid, us): (state, sup) for _, kind, aid, us, state, sup in rows
                      if kind == "upsert"}
        for aid, versions in self.upserts.items():
            for v in versions:
                state, _ = by_version[(aid, v)]
                assert state in ("delivered", "superseded", "pending", "in_flight", "failed")
                if state == "superseded":
                    assert aid in self.deleted or v < max(versions), (
                        "superseded without a newer version or a delete")
        # in-flight rows are exactly the model's open batches
        in_flight = {r[0] for r in rows if r[4] == "in_flight"}
        assert in_flight == {i.id for items in self.open.values() for i in items}

    @invariant()
    def tallies_count_the_rows(self):
        """status() reads tallies the append and the schema's triggers keep: the same as
        counting the rows."""
        if not hasattr(self, "ob"):
            return
        by_state = dict(raw_rows(self.ob, "SELECT state, count(*) FROM items GROUP BY state"))
        (events,), = raw_rows(self.ob, "SELECT count(*) FROM events")
        (ignored,), = raw_rows(self.ob, "SELECT count(*) FROM events WHERE outcome = 'ignored'")
        st = self.ob.status()
        assert {k: v for k, v in st["counts"].items() if v and k != "ignored"} == by_state
        assert (st["events_total"], st["counts"]["ignored"]) == (events, ignored)

    def drain_and_check(self):
        """Deliver everything (worker recovers from every failure) and check the end state."""
        for bid, items in list(self.open.items()):
            self.ob.mark_delivered([i.id for i in items], bid)
            for i in items:
                if i.kind == "upsert":
                    self.delivered.setdefault(i.annotation_id, []).append(
                        parse_timestamp(i.updated_at))
                else:
                    self.delete_delivered.add(i.annotation_id)
        self.open.clear()
        self.named.clear()
        self.ob.requeue()
        for _ in range(100):
            b = self.ob.claim_batch(100)
            if b is None:
                break
            self.ob.mark_delivered([i.id for i in b.items], b.id)
            for i in b.items:
                if i.kind == "upsert":
                    seq = self.delivered.setdefault(i.annotation_id, [])
                    v = parse_timestamp(i.updated_at)
                    assert not seq or v > seq[-1]
                    seq.append(v)
                    self.ob.record_delivered(i.annotation_id, {"globalKey": "k"}, "imp", [])
                else:
                    self.delete_delivered.add(i.annotation_id)
        counts = self.ob.status()["counts"]
        assert counts["pending"] == counts["in_flight"] == counts["failed"] == 0
        for aid, versions in self.upserts.items():
            if aid in self.deleted:
                # something reached Labelbox -> the delete did too
                assert (aid in self.delete_delivered) == bool(self.delivered.get(aid))
            else:
                assert self.delivered[aid][-1] == max(versions), (
                    "the last delivered version is not the newest")


SETTINGS = settings(max_examples=80, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
OutboxMachine.TestCase.settings = SETTINGS
TestOutboxProperties = OutboxMachine.TestCase


def test_the_same_properties_on_postgresql(pg_server, pg_template):
    """Every example on a fresh database of its own."""
    names = itertools.count()

    def new_location():
        name = f"prop{next(names)}"
        return (pg_server.create_database(name, template=pg_template),
                lambda: pg_server.drop_database(name))

    machine = type("PgOutboxMachine", (OutboxMachine,),
                   {"new_location": staticmethod(new_location)})
    run_state_machine_as_test(machine, settings=settings(SETTINGS, max_examples=30))
