"""Replicas: webhook ack latency and delivery throughput with one and two labelbridge replicas
on PostgreSQL and with one on SQLite, in the same run (issue 18).

    python bench/replicas.py [--quick] [--events N] [--senders K] [--import-seconds S]
                             [--baseline OTHER_CHECKOUT/backend]

1. Processes: a private PostgreSQL cluster (``tests/pg.py``, fsync on), the Labelbox stand-in
   (``python -m tests.lbstandin``, one data row per annotation, every import RUNNING for
   ``--import-seconds``: a Labelbox import takes seconds, which is what several replicas hide)
   and the replicas (``labelbridge serve``, its delivery worker off during the first phase).
2. Acks: ``--events`` ANNOTATION_CREATED webhooks from ``--senders`` concurrent clients, spread
   over the replicas; every answer must be 200 (committed). Latency p50/p99 per configuration.
3. Delivery: then one ``labelbridge deliver`` per replica (what each replica's worker process
   is) drains the backlog; throughput = what was delivered after the first delivery / the time
   from the first delivery to the last (the workers' start-up, the same for any number of them,
   is left out; ``delivery_s`` includes it). Afterwards the stand-in must hold exactly one label
   per annotation.
4. The stand-in is not the bottleneck: its CPU use during delivery is measured (a fraction of
   one core), and an import stays RUNNING for a fixed time whatever the load, so two replicas
   can only be faster if their imports overlap.
5. The SQLite default is measured twice: this checkout and ``--baseline`` (default: the main
   worktree's ``backend``, the code before this branch), with the same load. Ack latency on
   this shared VM swings between minutes, so it is also compared with both servers up at once
   and the requests alternating between them in chunks of 100 (``sqlite_acks_alternating``).

Targets: two replicas >= 1.7x one replica's delivery throughput (PostgreSQL); SQLite's ack
latency and throughput within noise of the baseline. Writes ``bench/out/replicas.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import clean_env, log, percentile, tree_cpu_seconds, verdict  # noqa: E402
from labelbridge.groundtruth.outbox import Outbox  # noqa: E402
from tests.helpers import annotation_body  # noqa: E402
from tests.integration.lbservice import ONTOLOGY, PROJECT, TOKEN  # noqa: E402
from tests.lbstandin import new_cuid  # noqa: E402
from tests.pg import PgServer  # noqa: E402
from tests.procs import free_port, start_process, stop_process  # noqa: E402

OUT = ROOT / "bench" / "out"
BASELINE = Path("/work/main/backend")


def ontology_setup() -> list[dict]:
    def feature(f) -> dict:
        out = {"name": f.name, "kind": f.kind}
        if f.options:
            out["options"] = list(f.options)
        if f.nested:
            out["nested"] = [feature(n) for n in f.nested]
        return out
    return [feature(f) for f in ONTOLOGY]


class Standin:
    def __init__(self, work: Path, rows: int, import_seconds: float) -> None:
        setup = {"import_duration": import_seconds, "projects": [{
            "id": PROJECT, "name": "bench", "media_type": "IMAGE", "ontology": ontology_setup(),
            "data_rows": [{"id": new_cuid(), "global_key": f"img-{i}.jpg",
                           "row_data": f"http://img/img-{i}.jpg",
                           "media_attributes": {"width": 640, "height": 480}}
                          for i in range(rows)]}]}
        path = work / "standin.json"
        path.write_text(json.dumps(setup))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = start_process([sys.executable, "-m", "tests.lbstandin", "--port",
                                   str(self.port), "--api-key", "bench-key", "--setup",
                                   str(path)], clean_env(), self.url + "/_standin/health",
                                  work / "standin.log", cwd=ROOT)

    def labels_per_row(self) -> dict[str, int]:
        state = httpx.get(self.url + "/_standin/state", timeout=60).json()
        counts: dict[str, int] = {}
        for label in state["labels"]:
            if not label.get("deleted"):
                counts[label["global_key"]] = counts.get(label["global_key"], 0) + 1
        return counts

    def stop(self) -> None:
        stop_process(self.proc)


def replica_env(work: Path, standin: Standin, store: str | None, backend: Path | None,
                batch: int) -> dict[str, str]:
    env = clean_env(
        LABELBRIDGE_DATA_DIR=str(work), LABELBRIDGE_WEBHOOK_TOKEN=TOKEN,
        LABELBOX_API_KEY="bench-key", LABELBOX_PROJECT_ID=PROJECT,
        LABELBOX_ENDPOINT=standin.url + "/graphql", LABELBOX_REST_ENDPOINT=standin.url + "/api/v1",
        LABELBOX_APP_URL=standin.url, LABELBRIDGE_DELIVERY_WORKER="off",
        LABELBRIDGE_BATCH_SIZE=str(batch), LABELBRIDGE_BATCH_MAX_WAIT="0",
        LABELBRIDGE_IMPORT_POLL_INTERVAL="0.2", LABELBRIDGE_RECONCILE_INTERVAL="0",
        LOG_LEVEL="WARNING")
    if store:
        env["LABELBRIDGE_DATABASE_URL"] = store
    if backend is not None:   # another checkout's code first on the path
        env["PYTHONPATH"] = f"{backend}{os.pathsep}{ROOT}"
    return env


def post_all(urls: list[str], events: int, senders: int, first: int) -> list[float]:
    """Webhooks of annotations ``first`` .. ``first + events - 1`` (annotation i on data row
    img-i.jpg) from ``senders`` clients, sender k to ``urls[k % len(urls)]``; the latencies (s).
    Anything but 200 fails the run."""
    latencies: list[float] = []
    lock = threading.Lock()
    todo = iter(range(first, first + events))
    errors: list[str] = []

    def send(k: int) -> None:
        with httpx.Client(timeout=30) as client:
            mine = []
            for i in todo:
                body = annotation_body(i + 1, 100_000 + i, f"img-{i}.jpg")
                t = time.perf_counter()
                r = client.post(urls[k % len(urls)] + "/webhook", json=body,
                                headers={"X-Labelbridge-Token": TOKEN})
                mine.append(time.perf_counter() - t)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                    return
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"a webhook was not acknowledged: {errors[0]}")
    return sorted(latencies)


def run_config(name: str, replicas: int, store: str | None, backend: Path | None,
               args, work: Path) -> dict:
    log(f"[{name}] {replicas} replica(s), {'PostgreSQL' if store else 'SQLite'}"
        f"{f', code of {backend}' if backend else ''}")
    warm = min(50, args.events)
    standin = Standin(work, args.events + warm, args.import_seconds)
    procs: list[subprocess.Popen] = []
    workers: list[subprocess.Popen] = []
    try:
        urls, envs = [], []
        for n in range(replicas):
            env = replica_env(work / f"r{n}", standin, store, backend, args.batch)
            port = free_port()
            env["LABELBRIDGE_PORT"] = str(port)
            urls.append(f"http://127.0.0.1:{port}")
            envs.append(env)
            procs.append(start_process([sys.executable, "-m", "labelbridge", "serve"], env,
                                       urls[-1] + "/health", work / f"r{n}.log", timeout=60))
        post_all(urls, warm, args.senders, first=args.events)   # warm-up, not measured
        latencies = post_all(urls, args.events, args.senders, first=0)
        location = store or Path(envs[0]["LABELBRIDGE_DATA_DIR"]) / "outbox.sqlite3"
        with Outbox(location) as ob:
            base = ob.status()["counts"]["delivered"]
            cpu0 = tree_cpu_seconds(standin.proc.pid)
            t0 = time.monotonic()
            for n, env in enumerate(envs):
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "labelbridge", "deliver"], env=env,
                    stdout=subprocess.DEVNULL, stderr=open(work / f"w{n}.log", "ab")))
            first: tuple[float, int] | None = None
            while True:
                counts = ob.status()["counts"]
                now = time.monotonic()
                if first is None and counts["delivered"] > base:
                    first = (now, counts["delivered"] - base)
                if counts["delivered"] - base >= args.events + warm or now - t0 > 900:
                    break
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
            standin_cpu = tree_cpu_seconds(standin.proc.pid) - cpu0
            delivered = counts["delivered"] - base
        per_row = standin.labels_per_row()
        wanted = [f"img-{i}.jpg" for i in range(args.events + warm)]
        duplicates = sum(1 for k in wanted if per_row.get(k, 0) > 1)
        lost = sum(1 for k in wanted if per_row.get(k, 0) == 0)
        out = {"config": name, "replicas": replicas, "store": "postgresql" if store else "sqlite",
               "code": str(backend) if backend else "this checkout", "events": args.events,
               "ack_p50_ms": percentile(latencies, 50) * 1000,
               "ack_p99_ms": percentile(latencies, 99) * 1000,
               "delivered": delivered, "delivery_s": elapsed,
               "throughput_per_s": (delivered - first[1]) / max(1e-9, now - first[0]),
               "standin_cpu_share": standin_cpu / elapsed, "duplicates": duplicates,
               "lost": lost, "failed": counts["failed"]}
        log(f"[{name}] ack p50 {out['ack_p50_ms']:.1f} ms p99 {out['ack_p99_ms']:.1f} ms; "
            f"{delivered} delivered in {elapsed:.1f} s ({out['throughput_per_s']:.1f}/s after the "
            f"first); "
            f"stand-in CPU {out['standin_cpu_share']:.1%} of a core; duplicates {duplicates}, "
            f"lost {lost}")
        return out
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc in procs:
            stop_process(proc)
        standin.stop()


def sqlite_acks_alternating(args, work: Path, rounds: int) -> dict:
    """Ack latency of this checkout and the baseline on SQLite, both servers running, chunks
    of 100 webhooks sent to one then the other (the same moment's load for both)."""
    standin = Standin(work, 1, args.import_seconds)   # delivery is off: Labelbox is not called
    procs, urls = [], {}
    try:
        for name, backend in (("this checkout", None), ("baseline", args.baseline)):
            env = replica_env(work / name.replace(" ", "-"), standin, None, backend, args.batch)
            port = free_port()
            env["LABELBRIDGE_PORT"] = str(port)
            urls[name] = f"http://127.0.0.1:{port}"
            procs.append(start_process([sys.executable, "-m", "labelbridge", "serve"], env,
                                       urls[name] + "/health", work / f"{port}.log", timeout=60))
        got: dict[str, list[float]] = {name: [] for name in urls}
        for r in range(rounds):
            for name, url in (urls.items() if r % 2 == 0 else reversed(urls.items())):
                got[name] += post_all([url], 100, args.senders, first=r * 100)
        out = {name: {"p50_ms": percentile(sorted(v), 50) * 1000,
                      "p99_ms": percentile(sorted(v), 99) * 1000} for name, v in got.items()}
        out["ratio_p50"] = out["this checkout"]["p50_ms"] / out["baseline"]["p50_ms"]
        out["ratio_p99"] = out["this checkout"]["p99_ms"] / out["baseline"]["p99_ms"]
        log(f"[sqlite acks, alternating] {out}")
        return out
    finally:
        for proc in procs:
            stop_process(proc)
        standin.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="600 events (default 2000)")
    ap.add_argument("--events", type=int)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--import-seconds", type=float, default=2.0)
    ap.add_argument("--baseline", type=Path, default=BASELINE if BASELINE.exists() else None)
    args = ap.parse_args()
    args.events = args.events or (600 if args.quick else 2000)
    load_before = os.getloadavg()
    results = []
    with PgServer(durable=True) as pg, tempfile.TemporaryDirectory(prefix="lb-replicas-") as tmp:
        work = Path(tmp)
        plan = [("sqlite-1", 1, None, None)]
        if args.baseline:
            plan.append(("sqlite-1-baseline", 1, None, args.baseline))
        plan += [("pg-1", 1, "pg1", None), ("pg-2", 2, "pg2", None)]
        for name, replicas, db, backend in plan:
            store = pg.create_database(db) if db else None
            folder = work / name
            folder.mkdir()
            results.append(run_config(name, replicas, store, backend, args, folder))
        alternating = None
        if args.baseline:
            (work / "alternating").mkdir()
            alternating = sqlite_acks_alternating(args, work / "alternating",
                                                  6 if args.quick else 20)
    by = {r["config"]: r for r in results}
    ratio = by["pg-2"]["throughput_per_s"] / by["pg-1"]["throughput_per_s"]
    summary = {"two_replicas_vs_one": ratio, "target_1_7x": verdict(ratio >= 1.7),
               "exactly_once": verdict(all(r["duplicates"] == r["lost"] == 0 for r in results)),
               "load_before": load_before, "load_after": os.getloadavg(), "cpus": os.cpu_count()}
    if "sqlite-1-baseline" in by:
        new, old = by["sqlite-1"], by["sqlite-1-baseline"]
        summary["sqlite_vs_baseline"] = {
            "throughput": new["throughput_per_s"] / old["throughput_per_s"],
            "ack_p50": new["ack_p50_ms"] / old["ack_p50_ms"],
            "ack_p99": new["ack_p99_ms"] / old["ack_p99_ms"],
            "acks_alternating": alternating}
    print(f"{'config':<20}{'ack p50 ms':>11}{'ack p99 ms':>11}{'deliv/s':>9}{'stand-in':>9}"
          f"{'dup':>5}{'lost':>5}")
    for r in results:
        print(f"{r['config']:<20}{r['ack_p50_ms']:>11.1f}{r['ack_p99_ms']:>11.1f}"
              f"{r['throughput_per_s']:>9.1f}{r['standin_cpu_share']:>8.1%} {r['duplicates']:>4}"
              f"{r['lost']:>5}")
    print(json.dumps(summary, indent=2))
    OUT.mkdir(exist_ok=True)
    (OUT / f"replicas{'-quick' if args.quick else ''}.json").write_text(
        json.dumps({"results": results, "summary": summary}, indent=2))
    ok = ratio >= 1.7 and summary["exactly_once"] == "met"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
