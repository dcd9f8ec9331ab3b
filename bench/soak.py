"""Soak: exactly once over minutes of faults. Webhooks at a steady rate and ``/predict``
traffic against labelbridge while the Labelbox stand-in misbehaves on every operation kind and
the server is ``kill -9``ed and restarted at random moments; at the end every acknowledged
annotation must be in the stand-in exactly once. Bounded and loopback only.

    python bench/soak.py [--quick] [--seconds 300] [--rate 20] [--kills 3] [--seed N]
                         [--backend OTHER_CHECKOUT/backend]

1. Processes: the Labelbox stand-in (``python -m tests.lbstandin``; the webhook bench's
   ontology, one data row per annotation, every import RUNNING for 1 s so it is polled) and
   labelbridge (``serve``: Labelbox sink pointed at the stand-in, the demo export indexed for
   ``/predict``, the delivery worker as its child; leases of 10 s).
2. Load: ANNOTATION_CREATED bodies (the one Label Studio 1.23.2 sent, each with its own
   annotation, task, region ids and data row) at ``--rate`` per second, one in ten instead an
   ANNOTATION_UPDATED of an annotation already acknowledged (its box moved: the label must
   show the newest acknowledged version); ``/predict`` with Label Studio's request shape at
   ``--predict-rate`` (5 tasks each).
3. Faults, one window every 4-10 s, drawn at random: 429 on import creation, on ``labelImport``
   polling, on status files; 5xx on everything; dropped connections on polling and status
   files; an answer lost after the import was created.
4. ``--kills`` times, at random moments, the server gets SIGKILL (its worker dies with it) and
   is started again at once. Requests meanwhile fail: they are not acknowledged.
5. After the load: faults off, wait until nothing is pending or in flight, then read the
   stand-in's labels. Duplicates (a data row with more than one label) and lost (an
   acknowledged annotation without its label, or with an older version than the newest
   acknowledged) must be 0.

Prints the figures (events, acks, ack p50/p99, deliveries, duplicates, lost, RSS and open files
over time) and writes ``bench/out/soak.json`` (``soak-quick.json``: 60 s, the same 3 kills).
Exit status 1 when anything acknowledged is lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench.common import (clean_env, cpu_plan, log, percentile, pinned,  # noqa: E402
                          tree_open_files, tree_rss_mb)
from bench.webhook import ONTOLOGY  # noqa: E402
from labelbridge.model.ids import ndjson_uuid  # noqa: E402

OUT = ROOT / "bench" / "out"
DEMO_EXPORT = ROOT / "configs" / "demo" / "labelbox-export.ndjson"
LABEL_CONFIG = ROOT / "configs" / "image-detection.xml"
TOKEN, API_KEY = "soak-webhook-token", "soak-api-key"
PROJECT = "csoakproject0000000000001"
# The webhook bench's ontology, plus the spellings the demo export's feature names give these
# labels once it is indexed for /predict ("car", "person": the converter prefers a name the
# index knows, case-insensitively, and the demo export has both "Car" and "car").
SOAK_ONTOLOGY = ONTOLOGY + [dict(f, name=f["name"].lower()) for f in ONTOLOGY
                            if f["name"] in ("Car", "Person")]
FAULTS = [  # (kind, operations): every kind of Labelbox call misbehaves at some point
    ("429", ["createLabelImport"]), ("429", ["labelImport"]), ("429", ["statusFile"]),
    ("503", None), ("502", None), ("drop", ["labelImport"]), ("drop", ["statusFile"]),
]


def global_key(i: int) -> str:
    return f"soak-{i:06d}.jpg"


def box_left(version: int) -> float:
    """Where the Car box of an annotation's ``version`` lands in Labelbox (640 px wide)."""
    return round((10 + version) * 6.4, 3)


class Run:
    def __init__(self, args, work: Path) -> None:
        from tests.procs import free_port

        self.args = args
        self.work = work
        self.rng = random.Random(args.seed)
        self.server_cpus, self.client_cpus = cpu_plan()
        self.standin_port, self.port = free_port(), free_port()
        self.standin_url = f"http://127.0.0.1:{self.standin_port}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.rows = int(args.rate * args.seconds * 1.2) + 100
        self.env = clean_env(
            LABELBRIDGE_DATA_DIR=str(work / "var"), LABELBRIDGE_PORT=str(self.port),
            LABELBRIDGE_WEBHOOK_TOKEN=TOKEN, LABELBRIDGE_EXPORT=str(DEMO_EXPORT),
            LABELBRIDGE_LABEL_CONFIG=str(LABEL_CONFIG), LABELBOX_API_KEY=API_KEY,
            LABELBOX_PROJECT_ID=PROJECT, LABELBOX_ENDPOINT=self.standin_url + "/graphql",
            LABELBOX_REST_ENDPOINT=self.standin_url + "/api/v1",
            LABELBOX_APP_URL=self.standin_url, LABELBRIDGE_IMPORT_POLL_INTERVAL="0.5",
            LABELBRIDGE_BATCH_MAX_WAIT="1.0", LABELBRIDGE_LEASE_SECONDS="10",
            LABELBRIDGE_RETRY_MAX="20", LOG_LEVEL="INFO")
        if args.backend:   # another labelbridge (an older checkout's backend/) to compare
            self.env["PYTHONPATH"] = f"{args.backend.resolve()}{os.pathsep}{ROOT}"
        self.server = None
        self.standin = None
        self.kills: list[dict] = []
        self.faults: list[dict] = []
        self.samples: list[dict] = []
        self.sent: list[dict] = []        # every webhook: what, when, what came back
        self.predicts: Counter = Counter()
        self.versions: dict[int, int] = {}  # annotation -> newest version sent
        self.acked_versions: dict[int, int] = {}
        self.t0 = 0.0

    # ----- processes ----------------------------------------------------------------------
    def start_standin(self) -> None:
        from tests.procs import start_process

        rows = [{"id": f"csoakrow{i:017d}", "global_key": global_key(i),
                 "row_data": f"http://img.invalid/{global_key(i)}",
                 "media_attributes": {"width": 640, "height": 480}} for i in range(self.rows)]
        setup = self.work / "standin-setup.json"
        setup.write_bytes(orjson.dumps({"import_duration": 1.0, "projects": [{
            "id": PROJECT, "name": "soak", "media_type": "IMAGE", "ontology": SOAK_ONTOLOGY,
            "data_rows": rows}]}))
        self.standin = start_process(
            pinned([sys.executable, "-m", "tests.lbstandin", "--port", str(self.standin_port),
                    "--api-key", API_KEY, "--setup", str(setup)], self.client_cpus),
            clean_env(), self.standin_url + "/_standin/health", self.work / "standin.log",
            timeout=120)

    def start_server(self) -> float:
        from tests.procs import start_process

        t0 = time.perf_counter()
        self.server = start_process(pinned([sys.executable, "-m", "labelbridge", "serve"],
                                           self.server_cpus), self.env, self.url + "/health",
                                    self.work / "labelbridge.log", timeout=120)
        return time.perf_counter() - t0

    def kill_server(self) -> None:
        from tests.procs import stop_process

        os.kill(self.server.pid, signal.SIGKILL)     # the server alone; its worker dies with it
        self.server.wait(30)
        stop_process(self.server, signal.SIGKILL)

    def stop(self) -> None:
        from tests.procs import stop_process

        for proc in (self.server, self.standin):
            if proc is not None:
                stop_process(proc)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    # ----- load ---------------------------------------------------------------------------
    def webhook_body(self, ann: int, version: int) -> bytes:
        from tests.helpers import annotation_body

        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = annotation_body(1_000_000 + ann, 2_000_000 + ann, global_key(ann), x=10 + version,
                               updated_at=stamp, prefix="s",
                               action="ANNOTATION_UPDATED" if version else "ANNOTATION_CREATED")
        return orjson.dumps(body)

    async def webhooks(self, client: httpx.AsyncClient, until: float) -> None:
        n, pending = 0, set()
        start = time.monotonic()
        while time.monotonic() < until:
            due = start + n / self.args.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            acked = sorted(self.acked_versions)
            if acked and self.rng.random() < self.args.update_share:
                ann = self.rng.choice(acked)
                version = self.versions[ann] + 1
            else:
                ann, version = len(self.versions), 0
            self.versions[ann] = version
            task = asyncio.create_task(self.send(client, ann, version))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.gather(*pending)

    async def send(self, client: httpx.AsyncClient, ann: int, version: int) -> None:
        rec = {"ann": ann, "version": version, "at": self.now()}
        t0 = time.perf_counter()
        try:
            r = await client.post(self.url + "/webhook", content=self.webhook_body(ann, version),
                                  headers={"X-Labelbridge-Token": TOKEN,
                                           "Content-Type": "application/json"})
            rec["status"] = r.status_code
            rec["ms"] = round((time.perf_counter() - t0) * 1000, 2)
            if r.status_code == 200 and r.json().get("accepted") == 1:
                rec["acked"] = True
                self.acked_versions[ann] = max(version, self.acked_versions.get(ann, -1))
        except httpx.HTTPError as exc:
            rec["error"] = type(exc).__name__
        self.sent.append(rec)

    async def predictions(self, client: httpx.AsyncClient, until: float) -> None:
        rows = [orjson.loads(line) for line in DEMO_EXPORT.read_bytes().splitlines() if line]
        tasks = [{"id": 9000 + k, "data": {"image": r["data_row"]["row_data"],
                                            "global_key": r["data_row"]["global_key"]}}
                 for k, r in enumerate(rows)]
        tasks.append({"id": 9999, "data": {"image": "http://img.invalid/none.jpg"}})
        body = orjson.dumps({"tasks": tasks, "label_config": LABEL_CONFIG.read_text(),
                             "project": "1.1", "params": {}})
        while time.monotonic() < until:
            await asyncio.sleep(1 / self.args.predict_rate)
            try:
                r = await client.post(self.url + "/predict", content=body,
                                      headers={"Content-Type": "application/json"})
                ok = r.status_code == 200 and len(r.json()["results"]) == len(tasks)
                self.predicts["ok" if ok else f"status {r.status_code}"] += 1
            except httpx.HTTPError as exc:
                self.predicts[type(exc).__name__] += 1

    async def misbehave(self, client: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(4, 10))
            kind, ops = self.rng.choice(FAULTS)
            seconds = round(self.rng.uniform(2, 8), 1)
            doc = {"fail_for": {"seconds": seconds, "kind": kind, "operations": ops}}
            if self.rng.random() < 0.3:   # an import created whose answer never arrives
                doc["fail_next"] = {"n": 1, "kind": "lost", "operations": ["createLabelImport"]}
            await client.post(self.standin_url + "/_standin/faults", json=doc)
            self.faults.append({"at": self.now(), **doc})

    async def killer(self, until: float) -> None:
        span = until - time.monotonic()
        moments = sorted(self.rng.uniform(0.1, 0.85) * span for _ in range(self.args.kills))
        start = time.monotonic()
        for m in moments:
            await asyncio.sleep(max(0.0, start + m - time.monotonic()))
            at = self.now()
            await asyncio.to_thread(self.kill_server)
            restart = await asyncio.to_thread(self.start_server)
            self.kills.append({"at": at, "restart_s": round(restart, 2)})
            log(f"  {at:6.1f} s: kill -9, up again in {restart:.1f} s")

    async def sample(self, client: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            pid = self.server.pid
            rss = tree_rss_mb(pid)
            if not rss:    # restarting
                await asyncio.sleep(1)
                continue
            row = {"at": self.now(), "pid": pid, "rss_mb": round(rss, 1),
                   "open_files": tree_open_files(pid)}
            try:
                st = (await client.get(self.url + "/status", timeout=5)).json()["outbox"]
                row.update(pending=st["counts"]["pending"], in_flight=st["counts"]["in_flight"],
                           delivered=st["counts"]["delivered"],
                           batches=len(st.get("batches", [])))
            except (httpx.HTTPError, ValueError, KeyError):
                row["metrics"] = "down"
            self.samples.append(row)
            await asyncio.sleep(5)

    async def load(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(timeout=10, limits=limits) as client:
            self.t0 = time.monotonic()
            until = self.t0 + self.args.seconds
            await asyncio.gather(self.webhooks(client, until), self.predictions(client, until),
                                 self.misbehave(client, until), self.killer(until),
                                 self.sample(client, until + 1))
            await client.post(self.standin_url + "/_standin/faults", json={"clear": True})

    # ----- the end ------------------------------------------------------------------------
    def drain(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        st: dict = {}
        while time.monotonic() < deadline:
            try:
                st = httpx.get(self.url + "/status", timeout=10).json()["outbox"]
            except httpx.HTTPError:
                time.sleep(1)
                continue
            # (an older labelbridge, --backend, has no "batches": it counts in_flight)
            if st["counts"]["pending"] == 0 and not st.get("batches", st["counts"]["in_flight"]):
                break
            time.sleep(1)
        return st

    def check(self, state: dict) -> dict:
        labels: dict[str, list[dict]] = {}
        for lab in state["labels"]:
            if lab["project_id"] == PROJECT and not lab["deleted"]:
                labels.setdefault(lab["global_key"], []).append(lab)
        sent_rows = {global_key(a): a for a in self.versions}
        duplicates = [k for k, labs in labels.items() if len(labs) > 1]
        unexpected = [k for k in labels if k not in sent_rows]
        lost, stale = [], []
        for ann, version in self.acked_versions.items():
            labs = labels.get(global_key(ann), [])
            if not labs:
                lost.append(ann)
                continue
            car_uuid = ndjson_uuid(f"s{1_000_000 + ann}a")   # its Car box (lines name no
            car = next((a for a in labs[-1]["annotations"]   # feature: they carry schemaIds)
                        if a.get("uuid") == car_uuid), None)
            left = car and car.get("bbox", {}).get("left")
            # the newest acknowledged version, or a later one that reached the outbox unacked
            allowed = {box_left(v) for v in range(version, self.versions[ann] + 1)}
            if left is None or round(left, 3) not in allowed:
                stale.append(ann)
        imports = [i for i in state["imports"] if i["project_id"] == PROJECT]
        return {"annotations_sent": len(self.versions), "annotations_acked":
                len(self.acked_versions), "labels": sum(len(v) for v in labels.values()),
                "imports": len(imports), "imports_not_finished": sum(
                    1 for i in imports if i["state"] != "FINISHED"),
                "duplicates": len(duplicates), "lost": len(lost) + len(stale),
                "lost_missing": len(lost), "lost_stale_version": len(stale),
                "labels_on_rows_never_sent": len(unexpected),
                "examples": {"duplicates": duplicates[:5], "lost": lost[:5],
                             "stale": stale[:5]}}


def summarize(res: dict) -> str:
    w, c = res["webhooks"], res["check"]
    series = res["samples"]
    rss = [s["rss_mb"] for s in series]
    fds = [s["open_files"] for s in series]
    lines = [
        f"soak ({res['mode']}): {res['seconds']:g} s, {res['rate']:g} webhooks/s, "
        f"{res['predict_rate']:g} /predict/s, {len(res['kills'])} kill -9s at "
        f"{[k['at'] for k in res['kills']]} s, {len(res['faults'])} fault windows", "",
        f"webhook events sent            {w['sent']:>8,}  ({w['updates']:,} updates)",
        f"acknowledged (200, accepted)   {w['acked']:>8,}  ({w['refused']:,} refused or failed:"
        f" server down or restarting)",
        f"ack latency p50 / p99 / max    {w['p50_ms']:>8.1f} / {w['p99_ms']:.1f} / "
        f"{w['max_ms']:.1f} ms  ({w['over_1s']} over Label Studio's 1 s)",
        f"/predict requests              {sum(res['predicts'].values()):>8,}  {res['predicts']}",
        f"deliveries                     {c['imports']:>8,} imports, {c['labels']:,} labels for "
        f"{c['annotations_acked']:,} acknowledged annotations",
        f"duplicates                     {c['duplicates']:>8}  (must be 0)",
        f"lost                           {c['lost']:>8}  (must be 0: {c['lost_missing']} missing,"
        f" {c['lost_stale_version']} older than acknowledged)",
        f"dead letters                   {res['final_outbox']['dead_letters']:>8}",
        f"RSS of server + worker         {min(rss):.0f}-{max(rss):.0f} MB (last {rss[-1]:.0f})"
        if rss else "RSS: no samples",
        f"open files                     {min(fds)}-{max(fds)} (last {fds[-1]})"
        if fds else "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="60 s")
    ap.add_argument("--seconds", type=float, default=None, help="load duration (default 300)")
    ap.add_argument("--rate", type=float, default=20.0, help="webhooks per second")
    ap.add_argument("--predict-rate", type=float, default=10.0, help="/predict per second")
    ap.add_argument("--update-share", type=float, default=0.1)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--backend", type=Path, default=None,
                    help="serve labelbridge from this backend/ folder (e.g. of an older commit: "
                    "`git archive REV backend | tar x -C DIR`) instead of this checkout's")
    args = ap.parse_args(argv)
    args.seconds = args.seconds or (60.0 if args.quick else 300.0)
    args.seed = args.seed if args.seed is not None else int(time.time())
    work = OUT / ("soak-quick" if args.quick else "soak")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    run = Run(args, work)
    t_all = time.perf_counter()
    try:
        log(f"[1/4] stand-in ({run.rows:,} data rows) and labelbridge (seed {args.seed})")
        run.start_standin()
        run.start_server()
        log(f"[2/4] {args.seconds:g} s of load, faults and {args.kills} kill -9s")
        asyncio.run(run.load())
        log("[3/4] faults off; waiting until nothing is pending or in flight")
        final = run.drain(timeout=300)
        log("[4/4] reading the stand-in's labels")
        state = httpx.get(run.standin_url + "/_standin/state", timeout=600).json()
        check = run.check(state)
    finally:
        run.stop()
    acked = sorted(r["ms"] for r in run.sent if r.get("acked"))
    res = {
        "bench": "soak", "mode": "quick" if args.quick else "full", "seed": args.seed,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": args.seconds,
        "rate": args.rate, "predict_rate": args.predict_rate, "kills": run.kills,
        "faults": run.faults, "predicts": dict(run.predicts),
        "webhooks": {"sent": len(run.sent), "updates": sum(1 for r in run.sent if r["version"]),
                     "acked": len(acked), "refused": len(run.sent) - len(acked),
                     "statuses": dict(Counter(str(r.get("status", r.get("error")))
                                              for r in run.sent)),
                     "p50_ms": percentile(acked, 50), "p99_ms": percentile(acked, 99),
                     "max_ms": acked[-1] if acked else float("nan"),
                     "over_1s": sum(1 for v in acked if v > 1000),
                     "slowest": sorted(({"at": r["at"], "ms": r["ms"]} for r in run.sent
                                        if r.get("acked")), key=lambda r: -r["ms"])[:10]},
        "check": check, "final_outbox": {k: final.get(k) for k in (
            "counts", "dead_letters", "batches", "duplicates_total", "events_total")},
        "samples": run.samples, "total_s": round(time.perf_counter() - t_all, 1),
    }
    out = OUT / ("soak-quick.json" if args.quick else "soak.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(summarize(res))
    print(f"\nwritten {out.relative_to(ROOT)} in {res['total_s']:.0f} s")
    return 1 if check["duplicates"] or check["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
