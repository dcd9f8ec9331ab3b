"""Three replicas (``labelbridge serve`` processes) on one PostgreSQL database, delivering to the
Labelbox stand-in through the real SDK while it answers 429s; one replica is ``kill -9``ed
while it imports, another stopped with SIGTERM. What counts is what the stand-in holds: one
label per acknowledged annotation. Work that must run once (reconciliation, the model-run
refresh and its index builds) is shown to have run on one replica at a time by the record
every run leaves (``job_runs``) and by the index generations built.
"""

from __future__ import annotations

import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest

from labelbridge.groundtruth.outbox import Outbox

from tests.helpers import MODEL, annotation_body, run_rows
from tests.integration.lbservice import (PROJECT, Service, labels_per_row, lines_per_uuid,
                                         make_standin, u5)

ROWS = 160
RUN = "crunreplica00000000000001"
pytestmark = pytest.mark.timeout(300)


class SlowLabelStudio:
    """Label Studio's API as reconciliation meets it on a bad day: every request is answered
    503 after ``delay`` seconds, so each reconciliation pass takes that long (long enough that
    two passes at once would overlap in the record)."""

    def __init__(self, delay: float = 0.6) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(outer.delay)
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.delay = delay
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def worker_replica(owner: str, replicas: list[Service]) -> Service | None:
    """The replica whose delivery worker (a child process) is the batch owner
    ``host:pid:tag``."""
    pid = int(owner.split(":")[1])
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid")))
    return next((r for r in replicas if r.proc is not None and r.proc.pid in (pid, ppid)), None)


def open_named_batches(url: str) -> list[dict]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("SELECT id, import_name, owner, attempts FROM batches WHERE "
                            "closed_at IS NULL AND import_name IS NOT NULL AND owner IS NOT NULL"
                            ).fetchall()


def overlapping(runs: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of finished runs of one job whose [start, end] intervals intersect."""
    done = sorted((r for r in runs if r["finished_at"] is not None),
                  key=lambda r: r["started_at"])
    return [(a, b) for a, b in zip(done, done[1:]) if b["started_at"] < a["finished_at"]]


def test_three_replicas_deliver_every_acknowledged_annotation_exactly_once(tmp_path, pg_url):
    standin = make_standin(ROWS)
    standin.add_model(MODEL, name="m")
    standin.add_model_run(MODEL, RUN, "prod-1", run_rows(RUN, 20, tag="a"))
    standin.set_import_duration(0.8)   # an import is in flight long enough to kill its replica
    ls = SlowLabelStudio()
    env = {"LABELBRIDGE_DATABASE_URL": pg_url, "LABELBOX_MODEL_RUN_ID": RUN,
           "LABELBRIDGE_REFRESH_INTERVAL": "1", "LABEL_STUDIO_URL": ls.url,
           "LABEL_STUDIO_API_KEY": "ls-token", "LABEL_STUDIO_PROJECT_ID": "1",
           "LABELBRIDGE_RECONCILE_INTERVAL": "0.3", "LABELBRIDGE_LEASE_SECONDS": "3",
           "LABELBRIDGE_BATCH_SIZE": "8", "LABELBRIDGE_BATCH_MAX_WAIT": "0.1",
           "LABELBRIDGE_SHUTDOWN_TIMEOUT": "5"}
    replicas = [Service(tmp_path / f"replica-{n}", standin, **env) for n in range(3)]
    ids = itertools.count(1)
    acked: list[int] = []

    def post(targets: list[Service], n: int) -> None:
        for svc, _ in zip(itertools.cycle(targets), range(n)):
            i = next(ids)
            svc.post(annotation_body(50_000 + i, 60_000 + i, f"img-{i}.jpg"))  # 200: committed
            acked.append(i)

    try:
        for svc in replicas:
            svc.start()
        standin.fail_next(6, "429", {"createLabelImport"})
        standin.fail_next(6, "429", {"labelImport"})
        # imports stay RUNNING until the kill: the victim cannot finish its batch between being
        # picked and being killed (on a loaded machine it sometimes did)
        standin.set_import_duration(3600)
        post(replicas, 48)

        # kill -9 the replica whose worker holds a batch being imported (its name is stored)
        deadline, victim, held = time.monotonic() + 30, None, None
        while victim is None and time.monotonic() < deadline:
            for batch in open_named_batches(pg_url):
                victim = worker_replica(batch["owner"], replicas)
                if victim is not None:
                    held = batch
                    break
            time.sleep(0.02)
        assert victim is not None, "no replica was caught importing"
        victim.kill()
        standin.set_import_duration(0.8)
        alive = [r for r in replicas if r is not victim]
        standin.fail_next(4, "429", {"createLabelImport", "labelImport"})
        post(alive, 48)

        # SIGTERM a second one while it delivers: it finishes its step and gives back the rest
        stopped = alive[0]
        stopped.stop()
        assert "Application shutdown complete" in stopped.log.read_text()
        last = alive[1]
        post([last], 40)
        standin.set_model_run_rows(RUN, run_rows(RUN, 21, tag="a"))   # the run moved on

        with Outbox(pg_url) as ob:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                counts = ob.status()["counts"]
                if counts["delivered"] == len(acked) and not counts["pending"] + \
                        counts["in_flight"]:
                    break
                time.sleep(0.3)
            assert counts["delivered"] == len(acked) and counts["failed"] == 0, (
                counts, last.log.read_text()[-4000:])

        # exactly once: one live label per annotation, one successful line per region uuid
        assert labels_per_row(standin, [f"img-{i}.jpg" for i in acked]) == {
            f"img-{i}.jpg": 1 for i in acked}
        lines = lines_per_uuid(standin)
        assert {lines[u5(f"r{50_000 + i}{s}")] for i in acked for s in "abw"} == {1}
        assert any(f["kind"] == "429" for f in standin.fault_log)
        # the killed replica's import was resumed by name by another one, not sent again
        assert [i["name"] for i in standin.imports(PROJECT)].count(held["import_name"]) == 1
        with psycopg.connect(pg_url, row_factory=psycopg.rows.dict_row) as conn:
            taken = conn.execute("SELECT attempts, owner, closed_at FROM batches WHERE id = %s",
                                 [held["id"]]).fetchone()
            assert taken["attempts"] >= 2 and taken["closed_at"] is not None
            assert taken["owner"] != held["owner"]

            # the new run is indexed once, by one replica; the last one serves it
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and conn.execute(
                    "SELECT max(id) AS n FROM ix_generations").fetchone()["n"] < 2:
                time.sleep(0.2)
            time.sleep(3)   # every replica has looked again meanwhile (refresh every 1 s)
            built = conn.execute("SELECT id, fingerprint, built_by FROM ix_generations "
                                 "ORDER BY id").fetchall()
            assert [g["id"] for g in built] == [1, 2], built   # one build per version of the run
            assert built[0]["fingerprint"] != built[1]["fingerprint"]
            runs = {job: conn.execute("SELECT replica, started_at, finished_at FROM job_runs "
                                      "WHERE job = %s ORDER BY started_at", [job]).fetchall()
                    for job in ("reconcile", "index")}
        status = httpx.get(last.url + "/status").json()
        assert status["index"]["swaps"] >= 1 and status["index_rows"] == 21

        for job, done in runs.items():
            assert len(done) >= 5, f"{job} ran {len(done)} times"
            assert overlapping(done) == [], f"{job}: two replicas at once"
            # it moved on to another replica when its replica died or stopped
            assert len({r["replica"].split(":")[1] for r in done}) >= 2, (job, done)
    finally:
        for svc in replicas:
            svc.stop()
        ls.stop()
        standin.stop()
