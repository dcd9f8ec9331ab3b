"""History bench: what a long history costs when nothing happens. Idle CPU of the server and its
delivery worker, ``/metrics`` latency, ``outbox status`` latency, at 10k and at 1M delivered
items; the target is the 1M figures within 1.5x of the 10k ones (the 10k run is the floor).

    python bench/history.py [--quick] [--sizes 10000,1000000] [--idle-seconds 30]

1. A synthetic outbox per size (``bench/out/history-cache/``, reused while the schema is the
   same): N delivered annotations, as the worker leaves them: the event with a 400-byte payload,
   the delivered item, the annotation index row, its import record and three region uuids, one
   closed batch per 100 items. Written in bulk through SQLite into a file the real ``Outbox``
   created (so the schema, the indexes and the tallies' triggers are the real ones), within the
   retention period (retention finds nothing to prune, as in a steady service).
2. In process: ``Outbox.status()`` and the worker's idle poll (``take_over`` + ``ready``),
   p50/p99 of 2,000 calls each, alternating between the sizes in chunks of 50.
3. The CLI: ``labelbridge outbox status --json``, median wall time of 9 runs each, alternating
   between the sizes (most of it is Python starting; the difference between sizes is the query).
4. The service: ``labelbridge serve`` (file sink, the delivery worker as its child process) on
   a copy of each outbox, all sizes at once: CPU seconds each process tree uses while idle for
   the same ``--idle-seconds``, then 1,000 sequential ``GET /metrics`` each, alternating between
   the servers in chunks of 20.

Prints a table and writes ``bench/out/history.json`` (``history-quick.json`` with ``--quick``:
10k and 200k items, 10 s idle).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from bench.common import (clean_env, cpu_plan, log, percentile, pinned,  # noqa: E402
                          tree_cpu_seconds, tree_pids, verdict)

OUT = ROOT / "bench" / "out"
CACHE = OUT / "history-cache"
TARGET_RATIO = 1.5
PAYLOAD = b'{"annotation":{"result":[' + b"0" * 360 + b']}}'


def synthetic_outbox(n: int) -> Path:
    """An outbox holding ``n`` delivered annotations (cached by size and schema version)."""
    from labelbridge.groundtruth.outbox import Outbox
    from labelbridge.groundtruth.outbox.sqlite import SCHEMA_VERSION

    path = CACHE / f"outbox-{n}-v{SCHEMA_VERSION}.sqlite3"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    for leftover in part.parent.glob(part.name + "*"):
        leftover.unlink()
    Outbox(part).close()
    t0 = time.perf_counter()
    now = time.time() - 3600          # an hour ago: well within any retention
    conn = sqlite3.connect(part, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    step = 50_000
    for lo in range(0, n, step):
        ids = range(lo + 1, min(n, lo + step) + 1)
        conn.executemany(
            "INSERT INTO events(id, received_at, source, kind, annotation_id, project_id,"
            " task_id, updated_at, updated_us, dedup_key, outcome, payload) VALUES"
            " (?, ?, 'webhook', 'upsert', ?, 1, ?, '2026-11-22T12:00:00Z', ?, ?, 'queued', ?)",
            ((i, now, i, i, i, f"u:{i}:{i}", PAYLOAD) for i in ids))
        conn.executemany(
            "INSERT INTO items(id, event_id, kind, annotation_id, project_id, task_id,"
            " updated_at, updated_us, state, attempts, batch_id, created_at, changed_at)"
            " VALUES (?, ?, 'upsert', ?, 1, ?, '2026-11-22T12:00:00Z', ?, 'delivered', 1, ?, ?,"
            " ?)", ((i, i, i, i, i, i // 100 + 1, now, now) for i in ids))
        conn.executemany(
            "INSERT INTO annotations(annotation_id, project_id, task_id, latest_updated_at,"
            " latest_us, latest_item_id, seen_updated_at, seen_us, delivered_at, delivered_us,"
            " data_row, first_seen_at, changed_at) VALUES (?, 1, ?, '2026-11-22T12:00:00Z', ?,"
            " ?, '2026-11-22T12:00:00Z', ?, ?, ?, ?, ?, ?)",
            ((i, i, i, i, i, now, i, f'{{"globalKey":"img-{i}.jpg"}}', now, now) for i in ids))
        conn.executemany(
            "INSERT INTO annotation_imports(annotation_id, import_name, recorded_at, uuids,"
            " started_at) VALUES (?, ?, ?, ?, ?)",
            ((i, f"labelbridge-{i // 100 + 1}", now, f'["{i}-a","{i}-b","{i}-w"]', now - 1)
             for i in ids))
        conn.executemany(
            "INSERT INTO region_uuid(annotation_id, uuid, ls_region_id, data_row, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            ((i, f"{i}-{s}", f"r{i}{s}", f'{{"globalKey":"img-{i}.jpg"}}', now)
             for i in ids for s in "abw"))
    conn.executemany(
        "INSERT INTO batches(id, created_at, size, import_name, import_set_at, closed_at)"
        " VALUES (?, ?, 100, ?, ?, ?)",
        ((b, now, f"labelbridge-{b}", now, now) for b in range(1, n // 100 + 2)))
    # items and events are counted by the append transaction, which this bypasses
    conn.execute("UPDATE tallies SET n = n + ? WHERE name IN ('items:delivered', 'events',"
                 " 'events:queued')", (n,))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(str(part) + suffix).unlink(missing_ok=True)
    part.replace(path)
    log(f"  built a synthetic outbox of {n:,} delivered items in "
        f"{time.perf_counter() - t0:.0f} s ({path.stat().st_size / 1e6:,.0f} MB)")
    return path


def latency(samples: list[float]) -> dict:
    samples = sorted(samples)
    return {"p50_ms": round(percentile(samples, 50), 3),
            "p99_ms": round(percentile(samples, 99), 3)}


def alternating(calls: list, rounds: int = 40, chunk: int = 50) -> list[dict]:
    """Latency of each call, ``rounds`` x ``chunk`` times, alternating between the calls in
    chunks (drift on this shared machine hits all alike)."""
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for k, call in enumerate(calls):
            for _ in range(chunk):
                t0 = time.perf_counter()
                call()
                samples[k].append((time.perf_counter() - t0) * 1000)
    return [latency(s) for s in samples]


def in_process(dbs: list[Path]) -> list[dict]:
    from labelbridge.groundtruth.outbox import Outbox

    boxes = [Outbox(db) for db in dbs]
    try:
        def idle_poll(ob: Outbox):   # what the worker does every poll when nothing is due
            return lambda: (ob.take_over(owner="bench"), ob.ready(100, 2.0))

        status = alternating([ob.status for ob in boxes])
        poll = alternating([idle_poll(ob) for ob in boxes])
        return [{"delivered": ob.status()["counts"]["delivered"], "status": s,
                 "worker_idle_poll": p} for ob, s, p in zip(boxes, status, poll)]
    finally:
        for ob in boxes:
            ob.close()


def cli_status(data_dirs: list[Path], runs: int = 9) -> list[dict]:
    """Median wall time of ``labelbridge outbox status --json`` per data dir, alternating."""
    walls: list[list[float]] = [[] for _ in data_dirs]
    for _ in range(runs):
        for k, data_dir in enumerate(data_dirs):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "labelbridge", "outbox", "status",
                                  "--json"], env=clean_env(LABELBRIDGE_DATA_DIR=str(data_dir)),
                                 cwd=ROOT, capture_output=True, text=True, timeout=300)
            walls[k].append((time.perf_counter() - t0) * 1000)
            if out.returncode != 0:
                raise RuntimeError(out.stderr)
    return [{"median_ms": round(statistics.median(w), 1)} for w in walls]


def services(data_dirs: list[Path], idle_s: float, cpus: list[int]) -> list[dict]:
    """Every size's server at once: idle CPU over the same window, then ``GET /metrics``
    alternating between them in chunks (drift on this shared machine hits all alike)."""
    import httpx

    from tests.procs import free_port, start_process, stop_process

    procs, urls = [], []
    try:
        for data_dir in data_dirs:
            port = free_port()
            env = clean_env(LABELBRIDGE_DATA_DIR=str(data_dir), LABELBRIDGE_PORT=str(port),
                            LABELBRIDGE_WEBHOOK_TOKEN="bench", LOG_LEVEL="WARNING")
            urls.append(f"http://127.0.0.1:{port}")
            procs.append(start_process(pinned([sys.executable, "-m", "labelbridge", "serve"],
                                              cpus), env, urls[-1] + "/health",
                                       data_dir / "server.log", timeout=300))
        deadline = time.monotonic() + 60
        while any(len(tree_pids(p.pid)) < 2 for p in procs) and time.monotonic() < deadline:
            time.sleep(0.2)   # the delivery workers (children) are up
        time.sleep(3.0)       # start-up work (retention's first look, imports) is over
        cpu0, t0 = [tree_cpu_seconds(p.pid) for p in procs], time.monotonic()
        time.sleep(idle_s)
        cpu = [tree_cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0)]
        wall = time.monotonic() - t0
        with httpx.Client(timeout=30) as client:
            delivered = [client.get(u + "/status").json()["outbox"]["counts"]["delivered"]
                         for u in urls]
            metrics = alternating([lambda u=u: client.get(u + "/metrics").raise_for_status()
                                   for u in urls], rounds=50, chunk=20)
        return [{"processes": len(tree_pids(p.pid)),
                 "idle_cpu_percent": round(cpu[k] / wall * 100, 3),
                 "idle_cpu_ms_per_min": round(cpu[k] / wall * 60_000, 1),
                 "metrics": metrics[k], "metrics_delivered": delivered[k]}
                for k, p in enumerate(procs)]
    finally:
        for p in procs:
            stop_process(p)


def measure(n: int, work: Path) -> tuple[dict, Path]:
    log(f"[{n:,} delivered items]")
    db = synthetic_outbox(n)
    data_dir = work / f"var-{n}"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    shutil.copyfile(db, data_dir / "outbox.sqlite3")
    return {"items": n, "db_mb": round(db.stat().st_size / 1e6, 1)}, data_dir


def ratios(small: dict, big: dict) -> dict:
    def r(a: float, b: float) -> float | None:
        return round(b / a, 2) if a else None

    s_ip, b_ip = small["in_process"], big["in_process"]
    s_sv, b_sv = small["service"], big["service"]
    return {
        "status_p50": r(s_ip["status"]["p50_ms"], b_ip["status"]["p50_ms"]),
        "status_p99": r(s_ip["status"]["p99_ms"], b_ip["status"]["p99_ms"]),
        "worker_idle_poll_p50": r(s_ip["worker_idle_poll"]["p50_ms"],
                                  b_ip["worker_idle_poll"]["p50_ms"]),
        "cli_status": r(small["cli_status"]["median_ms"], big["cli_status"]["median_ms"]),
        "idle_cpu": r(s_sv["idle_cpu_percent"], b_sv["idle_cpu_percent"]),
        "metrics_p50": r(s_sv["metrics"]["p50_ms"], b_sv["metrics"]["p50_ms"]),
        "metrics_p99": r(s_sv["metrics"]["p99_ms"], b_sv["metrics"]["p99_ms"]),
    }


def summarize(res: dict) -> str:
    small, big = res["sizes"][0], res["sizes"][-1]
    lines = [f"history bench ({res['mode']}): {small['items']:,} vs {big['items']:,} delivered "
             f"items, {res['idle_seconds']:g} s idle", "",
             f"{'measure':<40}{small['items']:>12,}{big['items']:>12,}{'ratio':>8}  target"]
    rows = [("Outbox.status() p50 (ms)", "in_process", "status", "p50_ms", "status_p50"),
            ("Outbox.status() p99 (ms)", "in_process", "status", "p99_ms", "status_p99"),
            ("worker idle poll p50 (ms)", "in_process", "worker_idle_poll", "p50_ms",
             "worker_idle_poll_p50"),
            ("labelbridge outbox status, wall (ms)", "cli_status", None, "median_ms",
             "cli_status"),
            ("idle CPU, server + worker (% of a core)", "service", None, "idle_cpu_percent",
             "idle_cpu"),
            ("GET /metrics p50 (ms)", "service", "metrics", "p50_ms", "metrics_p50"),
            ("GET /metrics p99 (ms)", "service", "metrics", "p99_ms", "metrics_p99")]
    for label, part, sub, key, ratio_key in rows:
        a = small[part][sub][key] if sub else small[part][key]
        b = big[part][sub][key] if sub else big[part][key]
        ratio = res["ratios"][ratio_key]
        ok = ratio is not None and ratio <= TARGET_RATIO
        lines.append(f"{label:<40}{a:>12}{b:>12}{ratio if ratio is not None else '-':>8}  "
                     f"<= {TARGET_RATIO}: {verdict(ok)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10k and 200k items, 10 s idle")
    ap.add_argument("--sizes", default=None, help="comma-separated item counts")
    ap.add_argument("--idle-seconds", type=float, default=None)
    args = ap.parse_args(argv)
    sizes = [int(x) for x in (args.sizes or ("10000,200000" if args.quick
                                             else "10000,1000000")).split(",")]
    idle_s = args.idle_seconds or (10.0 if args.quick else 30.0)
    work = OUT / ("history-quick" if args.quick else "history")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server_cpus, _ = cpu_plan()
    t0 = time.perf_counter()
    measured, dirs = zip(*(measure(n, work) for n in sizes))
    log("[cli] labelbridge outbox status --json, 9 runs each")
    for res, cli in zip(measured, cli_status(list(dirs))):
        res["cli_status"] = cli
        log(f"  {res['items']:,}: {cli['median_ms']} ms")
    log("[in process] Outbox.status() and the worker's idle poll, 2,000 calls each")
    for res, ip in zip(measured, in_process([d / "outbox.sqlite3" for d in dirs])):
        res["in_process"] = ip
        log(f"  {res['items']:,}: status() p50 {ip['status']['p50_ms']} ms p99 "
            f"{ip['status']['p99_ms']} ms, idle poll p50 {ip['worker_idle_poll']['p50_ms']} ms")
    log(f"[servers] idle for {idle_s:g} s, then GET /metrics")
    for res, svc in zip(measured, services(list(dirs), idle_s, server_cpus)):
        res["service"] = svc
        log(f"  {res['items']:,}: idle CPU {svc['idle_cpu_percent']}%, /metrics p50 "
            f"{svc['metrics']['p50_ms']} ms p99 {svc['metrics']['p99_ms']} ms")
    measured = list(measured)
    res = {"bench": "history", "mode": "quick" if args.quick else "full",
           "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "idle_seconds": idle_s,
           "sizes": measured, "ratios": ratios(measured[0], measured[-1]),
           "target_ratio": TARGET_RATIO, "total_s": round(time.perf_counter() - t0, 1)}
    out = OUT / ("history-quick.json" if args.quick else "history.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(summarize(res))
    print(f"\nwritten {out.relative_to(ROOT)} in {res['total_s']:.0f} s")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
