"""The outbox under SIGKILL: every acknowledged event survives, the file stays sound, and
in-flight work is recovered as documented. Also: another process (the CLI) reading and writing
the same file while the server process appends."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from labelbridge.groundtruth.outbox import DEFAULT_LEASE_S, Outbox

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent('''
    import asyncio, sys, time
    from labelbridge.groundtruth.outbox import IncomingEvent, Outbox

    path, mode, start = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def event(aid, source="webhook"):
        return IncomingEvent("upsert", aid, 1, aid % 97, "2026-11-22T12:00:00.000001Z",
                             b"payload-%d-" % aid + b"x" * 3000, source)

    ob = Outbox(path)
    if mode == "sync":
        aid = start
        while True:
            ob.append([event(aid), event(aid + 1), event(aid, "reconcile")])
            print(aid, flush=True)          # acknowledged: committed before this line
            print(aid + 1, flush=True)
            aid += 2
    elif mode == "async":
        async def caller(k):
            aid = start + k
            while True:
                await ob.append_async([event(aid)])
                print(aid, flush=True)
                aid += 64

        async def main():
            await asyncio.gather(*(caller(k) for k in range(64)))
        asyncio.run(main())
    elif mode == "inflight":
        ob.append([event(start + i) for i in range(6)])
        a = ob.claim_batch(2)
        b = ob.claim_batch(2)
        ob.set_import_name(b.id, "import-b")
        print("A", a.id, *[i.id for i in a.items], flush=True)
        print("B", b.id, *[i.id for i in b.items], flush=True)
        print("READY", flush=True)
        time.sleep(60)
''')


def spawn(tmp_path: Path, db: Path, mode: str, start: int) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(script), str(db), mode, str(start)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def kill_after(proc: subprocess.Popen, lines: int) -> list[str]:
    """Read acknowledgements until `lines`, SIGKILL, then collect what was already printed."""
    out = []
    for line in proc.stdout:
        out.append(line.strip())
        if len(out) >= lines:
            break
    else:  # the child died on its own
        raise AssertionError(proc.stderr.read())
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    out += [x for x in rest.splitlines() if x.strip()]
    assert proc.returncode == -signal.SIGKILL
    return out


def check_file(db: Path) -> set[int]:
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        return {r[0] for r in raw.execute("SELECT annotation_id FROM events")}
    finally:
        raw.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sigkill_loses_no_acknowledged_event(tmp_path, mode):
    db = tmp_path / "outbox.sqlite3"
    acknowledged: set[int] = set()
    for round_, kill_at in enumerate([150, 400, 60]):  # several crashes on the same file
        proc = spawn(tmp_path, db, mode, start=round_ * 1_000_000)
        acknowledged |= {int(x) for x in kill_after(proc, kill_at)}
        present = check_file(db)
        missing = acknowledged - present
        assert not missing, f"acknowledged but lost after SIGKILL: {sorted(missing)[:10]}"
    with Outbox(db) as ob:
        st = ob.status()
        # nothing half-written: every event row has its item, and no duplicate got through
        assert st["counts"]["pending"] == st["events_total"] >= len(acknowledged)
        assert ob.recover(now=time.time() + DEFAULT_LEASE_S + 1) == []
    print(f"\n{mode}: {len(acknowledged)} acknowledged events survived 3 SIGKILLs")


def test_sigkill_with_items_in_flight_then_recover(tmp_path):
    db = tmp_path / "outbox.sqlite3"
    proc = spawn(tmp_path, db, "inflight", start=1)
    lines = []
    for line in proc.stdout:
        lines.append(line.split())
        if lines[-1] == ["READY"]:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    a_id, *a_items = map(int, lines[0][1:])
    b_id, *b_items = map(int, lines[1][1:])
    check_file(db)

    with Outbox(db) as ob:
        assert ob.status()["counts"]["in_flight"] == 4
        (batch,) = ob.recover(now=time.time() + DEFAULT_LEASE_S + 1)  # its lease ran out
        # B asked Labelbox for an import: the worker must look it up, not re-send
        assert (batch.id, batch.import_name) == (b_id, "import-b")
        assert [i.id for i in batch.items] == b_items
        assert all(i.payload.startswith(b"payload-") for i in batch.items)
        # A never reached Labelbox: back to pending, claimable again, B's annotations are not
        pending = {i["id"]: i for i in ob.items(state="pending")}
        assert set(a_items) <= set(pending)
        assert all(pending[i]["attempts"] == 1 for i in a_items)
        again = ob.claim_batch(10)
        claimed = [i.id for i in again.items]
        assert set(a_items) <= set(claimed) and not set(b_items) & set(claimed)
        assert len(claimed) == 4
        assert ob.status()["in_doubt"] == 2
        ob.mark_delivered(b_items, b_id)
        ob.mark_delivered(claimed, again.id)
        assert ob.status()["counts"]["delivered"] == 6


def test_cli_process_reads_and_writes_while_server_appends(tmp_path):
    """`labelbridge outbox status/requeue` from another process during a webhook burst."""
    db = tmp_path / "outbox.sqlite3"
    Outbox(db).close()
    proc = spawn(tmp_path, db, "async", start=0)
    try:
        assert proc.stdout.readline()  # the child is appending
        cli = Outbox(db, busy_timeout_s=10)
        seen = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            st = cli.status()
            seen.append(st["events_total"])
            cli.items(limit=5)
            cli.requeue()  # a write transaction, competing with the child's group commits
            cli.set_cursor("cli", str(len(seen)))
        cli.close()
        assert len(seen) > 3 and seen[-1] > seen[0] > 0
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    check_file(db)
