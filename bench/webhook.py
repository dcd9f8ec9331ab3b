"""Webhook benchmark: ack latency and throughput of ``POST /webhook``, durability of every ack,
and Labelbox API calls per delivered annotation.

    python bench/webhook.py [--quick] [--closed N] [--open-seconds S] [--rate R] [--senders K]

1. Processes: the Labelbox stand-in (``python -m tests.lbstandin``, a project whose ontology
   matches the captured label config: boxes Car/Person with the per-region checklist ``attr``,
   the global radio ``weather``, the relationship ``drives``; one data row per event, addressed
   by global key), labelbridge (``python -m labelbridge serve``, Labelbox sink pointed at the
   stand-in, default batch size) and the floor: a minimal FastAPI app served by uvicorn with the
   same settings, whose ``/webhook`` parses the JSON body and answers 200, storing nothing.
   Both servers are pinned to the same CPUs; the load generator (a separate process) and the
   stand-in (it plays a remote service) share the other CPU.
2. Load: ``--senders`` keep-alive HTTP/1.1 connections (one per sender, like the requests
   session of each Label Studio worker) posting ANNOTATION_CREATED bodies made from the body
   Label Studio 1.23.2 really sent (``tests/fixtures/ls-captures/basic-auth-flow/``), each
   with its own annotation id, task id, region ids, a fresh ``updated_at`` and the
   ``global_key`` of its own stand-in data row. Closed loop (every sender sends its next event
   as soon as the previous one is answered: the throughput) and open loop (events scheduled at
   a fixed ``--rate``, latency measured from the scheduled time, so a slow answer delays the
   count instead of hiding it). The floor gets the same bodies first.
3. Durability: every event acknowledged with 200 (and ``accepted: 1``) must be in the outbox
   event log exactly once (read-only SQLite connection while the service runs).
4. Delivery: after each labelbridge load the bench waits until the outbox has delivered
   everything, then counts the HTTP requests the labelbox SDK made to the stand-in (GraphQL
   posts and file downloads, from the stand-in's request log; the stand-in's ``calls`` counter
   counts an operation name and its root field for one request, so it is only used for the
   breakdown) per delivered annotation, in the open-loop window (the steady state at the target
   rate) and over the whole run, and annotations per import. Exactly once: every annotation's
   uuids are in exactly one successful import line, and each data row holds exactly one label.

Prints a table and writes ``bench/out/webhook.json`` (``webhook-quick.json`` with ``--quick``).
Performance is reported against the floor measured in the same run and against the issue's
absolute targets; nothing here is a pass/fail test (the exit status is 0 unless something broke,
an acknowledged event is missing, or a delivery check failed).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.common import (clean_env, cpu_plan, cpu_seconds, log, percentile, pinned,  # noqa: E402
                          verdict)

OUT = ROOT / "bench" / "out"
SCRIPT = Path(__file__).resolve()
CAPTURE = "basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json"
TARGETS = {"ack_p99_ms": 50.0, "accepted_per_s": 1000, "api_calls_per_annotation": 0.05}
LS_TIMEOUT_S = 1.0          # Label Studio's webhook timeout: a slower answer is a lost event
TOKEN = "bench-webhook-token"
TOKEN_HEADER = "X-Labelbridge-Token"
API_KEY = "bench-api-key"
PROJECT = "cbenchproject000000000001"
ANN_BASE, TASK_BASE = 1_000_000, 2_000_000
ONTOLOGY = [
    {"name": "Car", "kind": "bbox",
     "nested": [{"name": "attr", "kind": "checklist", "options": ["occluded", "truncated"]}]},
    {"name": "Person", "kind": "bbox",
     "nested": [{"name": "attr", "kind": "checklist", "options": ["occluded", "truncated"]}]},
    {"name": "weather", "kind": "radio", "options": ["sunny", "rainy"]},
    {"name": "drives", "kind": "relationship"},
]
# region ids of the captured annotation -> suffix of each event's own region ids
REGIONS = {"lbBox000001": "a", "lbBox000002": "b", "lbCls000001": "w"}
LOG_LINE = re.compile(r'"(GET|POST|HEAD|PUT|DELETE) (\S+) HTTP/1\.[01]" (\d{3})')


# ----- small helpers ------------------------------------------------------------------------











def http_json(method: str, url: str, body: dict | None = None, timeout: float = 120) -> dict:
    import httpx

    r = httpx.request(method, url, json=body, timeout=timeout)
    r.raise_for_status()
    return r.json()


def other_load() -> list[str]:
    """Processes not started by this bench using CPU right now (the run shares the machine)."""
    mine = {os.getpid()}
    try:
        out = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,args", "--sort=-pcpu"],
                             capture_output=True, text=True, timeout=10).stdout.splitlines()[1:]
    except (OSError, subprocess.SubprocessError):
        return []
    busy = []
    for line in out:
        parts = line.split(None, 3)
        if len(parts) < 4:
            continue
        pid, ppid, pcpu, args = int(parts[0]), int(parts[1]), float(parts[2]), parts[3]
        if pid in mine or ppid in mine or pcpu < 10:
            continue
        busy.append(f"{pcpu:.0f}% {args[:100]}")
    return busy[:5]


# ----- events -------------------------------------------------------------------------------

def global_key(i: int) -> str:
    return f"bench-{i:06d}.jpg"


def data_row_id(i: int) -> str:
    return f"cbenchrow{i:016d}"


def region_ids(i: int) -> dict[str, str]:
    return {old: f"r{i}{suffix}" for old, suffix in REGIONS.items()}


def event_uuids(i: int) -> set[str]:
    """The NDJSON uuids event ``i`` must produce (the relation is not a ground-truth line)."""
    from labelbridge.model.ids import ndjson_uuid

    return {ndjson_uuid(r) for r in region_ids(i).values()}


class Events:
    """ANNOTATION_CREATED bodies: the captured one, as event ``i`` of this bench."""

    def __init__(self) -> None:
        from tests.helpers import capture

        self.template = capture(CAPTURE)

    def body(self, i: int) -> bytes:
        t = self.template
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rename = region_ids(i)
        result = []
        for item in t["annotation"]["result"]:
            item = dict(item)
            for key in ("id", "from_id", "to_id"):
                if key in item:
                    item[key] = rename[item[key]]
            result.append(item)
        ann = dict(t["annotation"], id=ANN_BASE + i, task=TASK_BASE + i, result=result,
                   created_at=now, updated_at=now, unique_id=f"bench-{i}")
        task = dict(t["task"], id=TASK_BASE + i,
                    data={"image": f"http://img.invalid/{global_key(i)}",
                          "global_key": global_key(i)})
        return orjson.dumps(dict(t, annotation=ann, task=task))


def request_bytes(port: int, body: bytes) -> bytes:
    """What Label Studio's requests session sends (headers of the capture + its defaults)."""
    head = (f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "User-Agent: python-requests/2.34.2\r\nAccept-Encoding: gzip, deflate\r\n"
            "Accept: */*\r\nConnection: keep-alive\r\nContent-Type: application/json\r\n"
            f"{TOKEN_HEADER}: {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


# ----- the floor (a child process) ----------------------------------------------------------

def child_floor(port: int) -> None:
    """A FastAPI app whose /webhook parses the body and answers 200, storing nothing; served
    by uvicorn exactly as ``labelbridge serve`` serves its app."""
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def health() -> Response:
        return Response(b'{"status":"UP"}', media_type="application/json")

    async def webhook(request: Request) -> Response:
        body = orjson.loads(await request.body())
        return Response(orjson.dumps({"status": "accepted", "action": body.get("action")}),
                        media_type="application/json")

    # real annotation objects (this module's annotations are strings FastAPI cannot resolve
    # against names imported inside this function)
    health.__annotations__ = {"return": Response}
    webhook.__annotations__ = {"request": Request, "return": Response}
    app.get("/health")(health)
    app.post("/webhook")(webhook)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ----- the load generator (a child process) -------------------------------------------------

class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time; reads by Content-Length."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        k = head.find(b"content-length:")
        if k < 0:
            self._fail(ConnectionError("answer without Content-Length"))
            return
        e = head.find(b"\r\n", k)
        length = int(head[k + 15:e if e >= 0 else len(head)])
        total = end + 4 + length
        if len(buf) < total:
            return
        status = int(head[9:12])
        body = bytes(buf[end + 4:total])
        del buf[:total]
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_result((status, body, time.perf_counter()))

    def _fail(self, exc: BaseException) -> None:
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_exception(exc)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(ConnectionError(f"connection lost: {exc}"))

    async def send(self, raw: bytes) -> tuple[int, bytes, float, float]:
        if self.closed:
            raise ConnectionError("connection closed")
        self.waiter = self.loop.create_future()
        t0 = time.perf_counter()
        self.transport.write(raw)  # type: ignore[union-attr]
        status, body, t1 = await self.waiter
        return status, body, t0, t1


async def _load(spec: dict, raws: list[bytes]) -> dict:
    loop = asyncio.get_running_loop()
    n, senders = len(raws), spec["senders"]
    conns = []
    for _ in range(senders):
        _, proto = await loop.create_connection(lambda: _Conn(loop), "127.0.0.1", spec["port"])
        conns.append(proto)
    t_send = array.array("d", [0.0]) * n      # when the request was written
    t_due = array.array("d", [0.0]) * n       # when it was meant to be sent (open loop)
    t_done = array.array("d", [0.0]) * n      # when the whole answer was read
    status = array.array("i", [0]) * n
    accepted = array.array("b", [0]) * n
    errors: Counter = Counter()
    open_loop = spec["mode"] == "open"
    rate = spec.get("rate") or 0.0
    cursor = [0]

    async def record(i: int, conn: _Conn) -> None:
        try:
            st, body, t0, t1 = await conn.send(raws[i])
        except ConnectionError as exc:
            errors[str(exc)[:80]] += 1
            return
        t_send[i], t_done[i], status[i] = t0, t1, st
        if st == 200:
            try:
                answer = orjson.loads(body)
                accepted[i] = 1 if answer.get("accepted", 1) == 1 else 0
            except orjson.JSONDecodeError:
                errors["answer is not JSON"] += 1

    async def closed_sender(conn: _Conn) -> None:
        while cursor[0] < n:
            i = cursor[0]
            cursor[0] += 1
            await record(i, conn)

    async def open_sender(k: int, conn: _Conn, t0: float) -> None:
        for i in range(k, n, senders):
            due = t0 + i / rate
            t_due[i] = due
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await record(i, conn)

    usage0 = os.times()
    started = time.perf_counter() + 0.05
    if open_loop:
        work = [open_sender(k, c, started) for k, c in enumerate(conns)]
    else:
        work = [closed_sender(c) for c in conns]
    expected = n / rate if open_loop else n / 200.0
    try:
        async with asyncio.timeout(expected * 5 + 120):
            await asyncio.gather(*work)
    except TimeoutError:
        errors["phase timed out"] += 1
    usage1 = os.times()
    for c in conns:
        if c.transport is not None:
            c.transport.close()

    done = [i for i in range(n) if t_done[i] > 0]
    first = min((t_send[i] for i in done), default=0.0)
    last = max((t_done[i] for i in done), default=0.0)
    wall = last - first if done else 0.0
    service = sorted((t_done[i] - t_send[i]) * 1000 for i in done)
    from_due = sorted((t_done[i] - t_due[i]) * 1000 for i in done) if open_loop else service
    acked = [i for i in done if status[i] == 200 and accepted[i]]
    statuses = Counter(status[i] for i in done)
    late_sends = sum(1 for i in done if open_loop and t_send[i] - t_due[i] > 0.005)
    cpu = (usage1.user - usage0.user) + (usage1.system - usage0.system)

    def lat(values: list[float]) -> dict:
        return {"p50_ms": round(percentile(values, 50), 3),
                "p95_ms": round(percentile(values, 95), 3),
                "p99_ms": round(percentile(values, 99), 3),
                "max_ms": round(values[-1], 3) if values else None,
                "mean_ms": round(sum(values) / len(values), 3) if values else None}

    Path(spec["acked_path"]).write_text(json.dumps([spec["start"] + i for i in acked]))
    windows: dict[int, float] = {}  # when the slow acks happened: max latency per 100 ms
    for i in done:
        w = int(((t_due[i] if open_loop else t_send[i]) - started) * 10)
        windows[w] = max(windows.get(w, 0.0), (t_done[i] - (t_due[i] if open_loop
                                                            else t_send[i])) * 1000)
    return {
        "slowest_windows": [{"at_s": w / 10, "max_ms": round(v, 1)} for w, v in
                            sorted(windows.items(), key=lambda kv: -kv[1])[:8]],
        "mode": spec["mode"], "senders": senders, "sent": n, "answered": len(done),
        "acked": len(acked), "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors), "seconds": round(wall, 3),
        "answered_per_s": round(len(done) / wall, 1) if wall else 0.0,
        "acked_per_s": round(len(acked) / wall, 1) if wall else 0.0,
        "target_rate": rate or None,
        "latency": lat(from_due), "service_latency": lat(service),
        "over_ls_timeout": sum(1 for v in from_due if v > LS_TIMEOUT_S * 1000),
        "late_sends_over_5ms": late_sends,
        "client_cpu_s": round(cpu, 2),
        "client_cpu_share": round(cpu / wall, 2) if wall else None,
    }


def child_load(spec_path: str) -> dict:
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("cpus"):
        os.sched_setaffinity(0, spec["cpus"])
    events = Events()
    raws = [request_bytes(spec["port"], events.body(spec["start"] + k))
            for k in range(spec["count"])]
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return runner(_load(spec, raws))


def run_load(name: str, port: int, start: int, count: int, mode: str, senders: int,
             rate: float | None, cpus: list[int], work: Path) -> tuple[dict, list[int]]:
    spec = {"port": port, "start": start, "count": count, "mode": mode, "senders": senders,
            "rate": rate, "cpus": cpus, "acked_path": str(work / f"acked-{name}-{mode}.json")}
    spec_path = work / f"load-{name}-{mode}.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--child", "load", str(spec_path)],
                          stdout=subprocess.PIPE, cwd=ROOT, env=clean_env())
    if proc.returncode != 0:
        raise RuntimeError(f"load generator ({name}, {mode}) failed: exit {proc.returncode}")
    answer = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    acked = json.loads(Path(spec["acked_path"]).read_text())
    return answer, acked


# ----- the services -------------------------------------------------------------------------

class Services:
    def __init__(self, work: Path, rows: int, server_cpus: list[int], client_cpus: list[int],
                 poll_interval: float) -> None:
        from tests.procs import free_port

        self.work = work
        self.standin_port, self.lb_port, self.floor_port = free_port(), free_port(), free_port()
        self.standin_url = f"http://127.0.0.1:{self.standin_port}"
        self.lb_url = f"http://127.0.0.1:{self.lb_port}"
        self.floor_url = f"http://127.0.0.1:{self.floor_port}"
        self.data_dir = work / "var"
        self.standin_log = work / "standin.log"
        self.rows = rows
        self.server_cpus, self.client_cpus = server_cpus, client_cpus
        self.lb_env = clean_env(
            LABELBRIDGE_DATA_DIR=str(self.data_dir), LABELBRIDGE_HOST="127.0.0.1",
            LABELBRIDGE_PORT=str(self.lb_port), LABELBRIDGE_WEBHOOK_TOKEN=TOKEN,
            LABELBOX_API_KEY=API_KEY, LABELBOX_PROJECT_ID=PROJECT,
            LABELBOX_ENDPOINT=self.standin_url + "/graphql",
            LABELBOX_REST_ENDPOINT=self.standin_url + "/api/v1",
            LABELBOX_APP_URL=self.standin_url,
            LABELBRIDGE_IMPORT_POLL_INTERVAL=str(poll_interval), LOG_LEVEL="WARNING")
        self.procs: dict[str, subprocess.Popen] = {}
        self.start_s: dict[str, float] = {}

    def write_setup(self) -> Path:
        path = self.work / "standin-setup.json"
        rows = [{"id": data_row_id(i), "global_key": global_key(i),
                 "row_data": f"http://img.invalid/{global_key(i)}",
                 "media_attributes": {"width": 640, "height": 480}} for i in range(self.rows)]
        path.write_bytes(orjson.dumps({"import_duration": 0, "projects": [{
            "id": PROJECT, "name": "bench", "media_type": "IMAGE", "ontology": ONTOLOGY,
            "data_rows": rows}]}))
        return path

    def start(self) -> None:
        from tests.procs import start_process

        setup = self.write_setup()
        py = sys.executable
        jobs = {
            "standin": (pinned([py, "-m", "tests.lbstandin", "--port", str(self.standin_port),
                                "--api-key", API_KEY, "--setup", str(setup), "--verbose"],
                               self.client_cpus),
                        clean_env(), self.standin_url + "/_standin/health", self.standin_log),
            "labelbridge": (pinned([py, "-m", "labelbridge", "serve"], self.server_cpus),
                            self.lb_env, self.lb_url + "/health", self.work / "labelbridge.log"),
            "floor": (pinned([py, str(SCRIPT), "--child", "floor", str(self.floor_port)],
                             self.server_cpus),
                      clean_env(), self.floor_url + "/health", self.work / "floor.log"),
        }

        def one(name: str) -> None:
            cmd, env, health, log_path = jobs[name]
            t0 = time.perf_counter()
            self.procs[name] = start_process(cmd, env, health, log_path, timeout=300)
            self.start_s[name] = round(time.perf_counter() - t0, 2)

        with ThreadPoolExecutor(3) as pool:
            for f in [pool.submit(one, name) for name in jobs]:
                f.result()

    def stop(self) -> None:
        from tests.procs import stop_process

        for proc in self.procs.values():
            stop_process(proc)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    # -- labelbridge's outbox ----------------------------------------------------------

    def metrics(self) -> dict:
        return http_json("GET", self.lb_url + "/status")

    def wait_drained(self, expected_events: int, timeout: float) -> dict:
        """Until every accepted event is delivered, failed or skipped (nothing pending)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.metrics()["outbox"]
            c = st["counts"]
            settled = c["delivered"] + c["failed"] + c["skipped"] + c["superseded"]
            if c["pending"] == 0 and c["in_flight"] == 0 and settled >= expected_events:
                return st
            if time.monotonic() > deadline:
                log(f"  delivery not finished after {timeout:.0f} s: {c}")
                return st
            time.sleep(0.25)

    def outbox(self) -> sqlite3.Connection:
        db = self.data_dir / "outbox.sqlite3"
        return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)

    def cli_status(self) -> dict:
        out = subprocess.run([sys.executable, "-m", "labelbridge", "outbox", "status", "--json"],
                             env=self.lb_env, cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        return json.loads(out.stdout)

    # -- the stand-in ------------------------------------------------------------------

    def log_offset(self) -> int:
        return self.standin_log.stat().st_size

    def requests_since(self, offset: int, until: int | None = None) -> Counter:
        """HTTP requests the stand-in served (its request log), by kind."""
        with open(self.standin_log, "rb") as fh:
            fh.seek(offset)
            text = fh.read(None if until is None else until - offset).decode("latin-1")
        kinds: Counter = Counter()
        for m in LOG_LINE.finditer(text):
            method, path, code = m.groups()
            if path.startswith("/_standin/"):
                continue
            if path == "/graphql":
                kinds["graphql"] += 1
            elif path.startswith("/files/"):
                kinds["file:" + path.rsplit("/", 1)[-1].split(".")[0]] += 1
            else:
                kinds[f"other:{method} {path}"] += 1
            if code != "200":
                kinds[f"status:{code}"] += 1
        return kinds


# ----- checks -------------------------------------------------------------------------------

def committed_check(svc: Services, acked: list[int]) -> dict:
    """Every acknowledged event is in the outbox event log exactly once."""
    conn = svc.outbox()
    try:
        logged = Counter()
        for aid, n in conn.execute("SELECT annotation_id, count(*) FROM events WHERE source ="
                                   " 'webhook' GROUP BY annotation_id"):
            logged[aid] = n
    finally:
        conn.close()
    wanted = {ANN_BASE + i for i in acked}
    missing = [a for a in wanted if a not in logged]
    twice = [a for a in wanted if logged.get(a, 0) > 1]
    unexpected = [a for a in logged if a not in wanted]
    return {"acked": len(wanted), "in_log": sum(1 for a in wanted if a in logged),
            "missing": len(missing), "logged_more_than_once": len(twice),
            "logged_but_not_acked": len(unexpected),
            "mismatches": len(missing) + len(twice),
            "examples": sorted(missing)[:5] + sorted(twice)[:5]}


def outbox_timeline(svc: Services, windows: dict[str, tuple[int, int]]) -> dict:
    """From the outbox itself: group commits, delivery rate and delay per load window."""
    conn = svc.outbox()
    try:
        out = {}
        for name, (lo, hi) in windows.items():
            a_lo, a_hi = ANN_BASE + lo, ANN_BASE + hi
            commits, events = conn.execute(
                "SELECT count(DISTINCT received_at), count(*) FROM events WHERE annotation_id"
                " >= ? AND annotation_id < ?", (a_lo, a_hi)).fetchone()
            rows = conn.execute(
                "SELECT created_at, changed_at FROM items WHERE state = 'delivered' AND"
                " annotation_id >= ? AND annotation_id < ?", (a_lo, a_hi)).fetchall()
            if not rows:
                out[name] = {"events": events, "group_commits": commits}
                continue
            delays = sorted(b - a for a, b in rows)
            first_in = min(a for a, _ in rows)
            last_in = max(a for a, _ in rows)
            last_out = max(b for _, b in rows)
            out[name] = {
                "events": events, "group_commits": commits,
                "events_per_commit": round(events / commits, 1) if commits else None,
                "delivered": len(rows),
                "accept_span_s": round(last_in - first_in, 2),
                "deliver_span_s": round(last_out - first_in, 2),
                "delivered_per_s": round(len(rows) / (last_out - first_in), 1)
                if last_out > first_in else None,
                "delivery_delay_p50_s": round(percentile(delays, 50), 2),
                "delivery_delay_p99_s": round(percentile(delays, 99), 2),
                "delivery_delay_max_s": round(delays[-1], 2)}
        batches = conn.execute("SELECT size, created_at, import_set_at, closed_at FROM batches"
                               " ORDER BY id").fetchall()
        sizes = [b[0] for b in batches]
        spans = sorted(b[3] - b[1] for b in batches if b[3] is not None)
        out["batches"] = {"count": len(batches), "mean_size": round(sum(sizes) / len(sizes), 1)
                          if sizes else None, "min_size": min(sizes, default=None),
                          "max_size": max(sizes, default=None),
                          "seconds_p50": round(percentile(spans, 50), 3) if spans else None,
                          "seconds_max": round(spans[-1], 3) if spans else None}
        return out
    finally:
        conn.close()


def delivery_check(state: dict, acked: list[int], window: tuple[int, int]) -> dict:
    """Exactly once in Labelbox: each acked event's uuids in exactly one successful import line,
    one live label per data row; annotations per import (whole run and steady-state window)."""
    success: Counter = Counter()
    per_import, per_import_window = [], []
    lo, hi = window
    for imp in state["imports"]:
        if imp["project_id"] != PROJECT:
            continue
        keys = set()
        for line, status in zip(imp["lines"], imp["statuses"] or []):
            if status.get("status") == "SUCCESS":
                success[line["uuid"]] += 1
            keys.add((line.get("dataRow") or {}).get("globalKey"))
        per_import.append(len(keys))
        idx = [int(k[6:12]) for k in keys if k and k.startswith("bench-")]
        if idx and all(lo <= i < hi for i in idx):
            per_import_window.append(len(keys))
    wanted = set()
    bad_uuid = 0
    for i in acked:
        us = event_uuids(i)
        wanted |= us
        bad_uuid += sum(1 for u in us if success[u] != 1)
    extra = sum(1 for u in success if u not in wanted)
    labels = Counter(lab["global_key"] for lab in state["labels"]
                     if lab["project_id"] == PROJECT and not lab["deleted"])
    rows_wrong = sum(1 for i in acked if labels.get(global_key(i), 0) != 1)
    rows_extra = sum(1 for k in labels if k not in {global_key(i) for i in acked})
    failed_imports = [imp["name"] for imp in state["imports"] if imp["state"] != "FINISHED"]

    def dist(values: list[int]) -> dict:
        return {"imports": len(values),
                "mean": round(sum(values) / len(values), 1) if values else None,
                "min": min(values, default=None), "max": max(values, default=None)}

    return {"annotations": len(acked), "uuids_expected": len(wanted),
            "uuids_not_exactly_once": bad_uuid, "unexpected_uuids": extra,
            "rows_without_exactly_one_label": rows_wrong, "labels_on_other_rows": rows_extra,
            "imports_not_finished": failed_imports[:5],
            "annotations_per_import": dist(per_import),
            "annotations_per_import_steady": dist(per_import_window),
            "ok": bad_uuid == 0 and extra == 0 and rows_wrong == 0 and rows_extra == 0
            and not failed_imports}


# ----- profiling (--profile) ---------------------------------------------------------------

def start_profiler(pid: int, work: Path, mode: str) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        log("  --profile: py-spy not found (pip install py-spy into the venv)")
        return None
    flag = "--gil" if mode == "cpu" else "--idle"
    return subprocess.Popen([spy, "record", "-p", str(pid), "-f", "raw", "-r", "200", flag,
                             "-t", "--nonblocking", "-o", str(work / "labelbridge.pyspy.txt")],
                            stdout=subprocess.DEVNULL, stderr=open(work / "py-spy.log", "wb"))


def stop_profiler(proc: subprocess.Popen, work: Path, top: int = 12) -> dict:
    """Stop py-spy; per thread: samples, the frames that were on the stack most (inclusive)."""
    proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {}
    path = work / "labelbridge.pyspy.txt"
    if not path.exists():
        return {}
    threads: dict[str, Counter] = {}
    leaves: dict[str, Counter] = {}
    totals: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread")), "thread ?")
        funcs = [f for f in frames if not f.startswith(("thread", "process"))]
        totals[thread] += int(n)
        inc = threads.setdefault(thread, Counter())
        for f in set(funcs):
            inc[f] += int(n)
        if funcs:
            leaves.setdefault(thread, Counter())[funcs[-1]] += int(n)
    return {"raw": str(path.relative_to(ROOT)), "samples_per_s": 200,
            "total_samples": sum(totals.values()), "threads": {
        t: {"samples": totals[t],
            "inclusive": [(f, round(c / totals[t], 3)) for f, c in threads[t].most_common(top)],
            "leaf": [(f, round(c / totals[t], 3)) for f, c in leaves.get(t, Counter()).most_common(top)]}
        for t in sorted(totals, key=totals.get, reverse=True)}}


# ----- report -------------------------------------------------------------------------------



def summarize(res: dict) -> str:
    lb, fl, t = res["labelbridge"], res["floor"], res["targets"]
    m = res["machine"]
    lines = [
        f"labelbridge webhook bench ({res['mode']}) — {res['senders']} senders, "
        f"{m['cpus']} CPUs: servers on CPU {m['server_cpus']}, load generator + Labelbox "
        f"stand-in on CPU {m['client_cpus']}",
        "",
        f"{'measure':<46}{'labelbridge':>13}{'floor':>11}{'ratio':>8}  target",
    ]

    def row(label: str, a, b, fmt: str, extra: str = "") -> None:
        ratio = f"{a / b:>8.2f}" if isinstance(a, (int, float)) and b else f"{'':>8}"
        bs = format(b, fmt) if b is not None else ""
        lines.append(f"{label:<46}{format(a, fmt):>13}{bs:>11}{ratio}  {extra}")

    cl, cf = lb["closed"], fl["closed"]
    row("closed loop: accepted events/s", cl["acked_per_s"], cf["acked_per_s"], ",.0f",
        f">= {TARGETS['accepted_per_s']:,}: {verdict(t['accepted_per_s']['met'])}")
    for k in ("p50_ms", "p99_ms", "max_ms"):
        row(f"closed loop: ack latency {k[:-3]} (ms)", cl["latency"][k], cf["latency"][k], ".1f")
    ol, of = lb["open"], fl["open"]
    rate = res["rate"]
    row(f"open loop {rate:,.0f}/s: ack latency p50 (ms)", ol["latency"]["p50_ms"],
        of["latency"]["p50_ms"], ".1f")
    row(f"open loop {rate:,.0f}/s: ack latency p99 (ms)", ol["latency"]["p99_ms"],
        of["latency"]["p99_ms"], ".1f",
        f"< {TARGETS['ack_p99_ms']:.0f} ms: {verdict(t['ack_p99_ms']['met'])}")
    row(f"open loop {rate:,.0f}/s: ack latency max (ms)", ol["latency"]["max_ms"],
        of["latency"]["max_ms"], ".1f")
    row(f"open loop {rate:,.0f}/s: achieved events/s", ol["acked_per_s"], of["acked_per_s"],
        ",.0f")
    row("server CPU ms per event (closed loop)", lb["cpu_ms_per_event_closed"],
        fl["cpu_ms_per_event_closed"], ".3f")
    cc = lb["committed"]
    row("acked events missing / twice in outbox log", cc["mismatches"], None, "d",
        f"= 0: {verdict(t['every_ack_committed']['met'])} ({cc['acked']:,} acked)")
    st = lb["steady_state_api"]
    row("Labelbox requests per annotation (steady)", st["requests_per_annotation"], None, ".4f",
        f"<= {TARGETS['api_calls_per_annotation']}: "
        f"{verdict(t['api_calls_per_annotation']['met'])}")
    row("Labelbox requests per annotation (whole run)", lb["run_api"]["requests_per_annotation"],
        None, ".4f")
    d = lb["delivery"]
    row("annotations per import (steady, mean)", d["annotations_per_import_steady"]["mean"],
        None, ".1f")
    tl = lb["timeline"]
    for name in ("closed", "open"):
        w = tl.get(name, {})
        if "delivered_per_s" in w:
            row(f"delivered/s after {name}-loop load", w["delivered_per_s"], None, ",.0f",
                f"(delay p50 {w['delivery_delay_p50_s']} s, p99 {w['delivery_delay_p99_s']} s)")
    over = (lb["closed"]["over_ls_timeout"] + lb["open"]["over_ls_timeout"])
    lines += [
        "",
        f"exactly once in Labelbox: {'ok' if d['ok'] else 'WRONG'} — "
        f"{d['annotations']:,} annotations, {d['uuids_expected']:,} uuids, "
        f"{d['uuids_not_exactly_once']} not exactly once, {d['rows_without_exactly_one_label']} "
        f"rows without exactly one label; dead letters {lb['final_status']['dead_letters']}",
        f"acks slower than Label Studio's 1 s timeout: {over}; non-200/errors: labelbridge "
        f"{lb['bad_answers']}, floor {fl['bad_answers']}",
        f"group commit: {tl.get('closed', {}).get('events_per_commit')} events per commit "
        f"(closed loop), {tl.get('open', {}).get('events_per_commit')} (open loop)",
    ]
    if res["other_load"]:
        lines.append("other processes busy on this machine during the run: "
                     + "; ".join(res["other_load"][:3]))
    return "\n".join(lines)


# ----- main ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke check (< 60 s)")
    ap.add_argument("--senders", type=int, default=200, help="concurrent senders (default 200)")
    ap.add_argument("--closed", type=int, default=None,
                    help="events in the closed-loop run (default 20000; 3000 with --quick)")
    ap.add_argument("--open-seconds", type=float, default=None,
                    help="length of the open-loop run (default 15 s; 4 s with --quick)")
    ap.add_argument("--rate", type=float, default=1000.0,
                    help="open-loop rate, events/s (default 1000, the target)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up events per server")
    ap.add_argument("--poll-interval", type=float, default=0.2,
                    help="LABELBRIDGE_IMPORT_POLL_INTERVAL (default 0.2 s)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output path")
    ap.add_argument("--profile", choices=("cpu", "wall"), default=None,
                    help="sample labelbridge with py-spy from its closed-loop load to the end of "
                    "the run: cpu = only threads holding the GIL, wall = every thread, waiting "
                    "included; the top frames per thread go into the JSON")
    args = ap.parse_args(argv)

    closed = args.closed or (3_000 if args.quick else 20_000)
    open_s = args.open_seconds or (4.0 if args.quick else 15.0)
    warmup = args.warmup if args.warmup is not None else (300 if args.quick else 1_000)
    opened = int(open_s * args.rate)
    senders = args.senders
    out_path = args.out or OUT / ("webhook-quick.json" if args.quick else "webhook.json")
    work = OUT / ("webhook-quick" if args.quick else "webhook")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server_cpus, client_cpus = cpu_plan()
    os.sched_setaffinity(0, client_cpus)  # this process mostly waits; keep it off the servers
    t_all = time.perf_counter()
    busy_before = other_load()

    # event index ranges (each labelbridge event has its own data row)
    w_rng = (0, warmup)
    c_rng = (warmup, warmup + closed)
    o_rng = (warmup + closed, warmup + closed + opened)
    rows = o_rng[1]

    log(f"[1/5] starting the Labelbox stand-in ({rows:,} data rows), labelbridge and the floor")
    svc = Services(work, rows, server_cpus, client_cpus, args.poll_interval)
    result: dict = {}
    try:
        svc.start()
        log(f"  started in {svc.start_s}")
        time.sleep(1.0)
        base_offset = svc.log_offset()
        http_json("POST", svc.standin_url + "/_standin/reset-calls", {})
        bad = Counter()

        def load(name: str, port: int, rng: tuple[int, int], mode: str) -> tuple[dict, list]:
            ans, acked = run_load(name, port, rng[0], rng[1] - rng[0], mode, senders,
                                  args.rate if mode == "open" else None, client_cpus, work)
            bad[name] += ans["answered"] - ans["acked"] + ans["sent"] - ans["answered"]
            log(f"  {name:<11} {mode:<6} {ans['acked']:>6,} acked, {ans['acked_per_s']:>8,.0f}/s,"
                f" p50 {ans['latency']['p50_ms']:.1f} ms, p99 {ans['latency']['p99_ms']:.1f} ms,"
                f" max {ans['latency']['max_ms']:.1f} ms; client CPU "
                f"{ans['client_cpu_share']:.0%}")
            return ans, acked

        log(f"[2/5] floor: {warmup:,} warm-up, {closed:,} closed loop, {open_s:g} s at "
            f"{args.rate:,.0f}/s")
        floor: dict = {}
        fpid = svc.pid("floor")
        load("floor", svc.floor_port, w_rng, "closed")
        cpu0 = cpu_seconds(fpid)
        floor["closed"], _ = load("floor", svc.floor_port, c_rng, "closed")
        floor["cpu_ms_per_event_closed"] = round(
            (cpu_seconds(fpid) - cpu0) * 1000 / max(floor["closed"]["acked"], 1), 4)
        floor["open"], _ = load("floor", svc.floor_port, o_rng, "open")

        log(f"[3/5] labelbridge: {warmup:,} warm-up, {closed:,} closed loop")
        lb: dict = {}
        spy = None
        lpid = svc.pid("labelbridge")
        _, acked_w = load("labelbridge", svc.lb_port, w_rng, "closed")
        svc.wait_drained(len(acked_w), timeout=120)
        spy = start_profiler(lpid, work, args.profile) if args.profile else None
        cpu0 = cpu_seconds(lpid)
        lb["closed"], acked_c = load("labelbridge", svc.lb_port, c_rng, "closed")
        lb["cpu_ms_per_event_closed"] = round(
            (cpu_seconds(lpid) - cpu0) * 1000 / max(lb["closed"]["acked"], 1), 4)
        lb["committed_closed"] = committed_check(svc, acked_w + acked_c)
        t0 = time.perf_counter()
        svc.wait_drained(len(acked_w) + len(acked_c), timeout=600)
        lb["drain_after_closed_s"] = round(time.perf_counter() - t0, 1)
        log(f"  closed-loop backlog delivered {lb['drain_after_closed_s']} s after the load")

        log(f"[4/5] labelbridge: {open_s:g} s at {args.rate:,.0f}/s (steady state)")
        steady_offset = svc.log_offset()
        http_json("POST", svc.standin_url + "/_standin/reset-calls", {})
        lb["open"], acked_o = load("labelbridge", svc.lb_port, o_rng, "open")
        t0 = time.perf_counter()
        final = svc.wait_drained(len(acked_w) + len(acked_c) + len(acked_o), timeout=600)
        lb["drain_after_open_s"] = round(time.perf_counter() - t0, 1)
        steady_end = svc.log_offset()
        if spy is not None:
            lb["profile"] = stop_profiler(spy, work)

        log("[5/5] checks: outbox log, Labelbox state, request counts")
        acked_all = acked_w + acked_c + acked_o
        lb["committed"] = committed_check(svc, acked_all)
        lb["final_status"] = svc.cli_status()
        state = http_json("GET", svc.standin_url + "/_standin/state", timeout=600)
        steady_calls = {k: v for k, v in sorted(state["calls"].items())}
        steady_req = svc.requests_since(steady_offset, steady_end)
        run_req = svc.requests_since(base_offset, steady_end)
        n_steady = len(acked_o)

        def api(kinds: Counter, n: int) -> dict:
            total = sum(v for k, v in kinds.items() if not k.startswith("status:"))
            return {"requests": total, "annotations": n, "by_kind": dict(sorted(kinds.items())),
                    "requests_per_annotation": round(total / n, 5) if n else None}

        lb["steady_state_api"] = {**api(steady_req, n_steady), "calls_counter": steady_calls}
        lb["run_api"] = api(run_req, len(acked_all))
        lb["delivery"] = delivery_check(state, acked_all, o_rng)
        lb["timeline"] = outbox_timeline(svc, {"warmup": w_rng, "closed": c_rng, "open": o_rng})
        lb["bad_answers"] = bad["labelbridge"]
        floor["bad_answers"] = bad["floor"]
        lb["final_outbox"] = final
    finally:
        svc.stop()

    import uvicorn

    ol = lb["open"]
    tgt = {
        "ack_p99_ms": {"target": TARGETS["ack_p99_ms"], "value": ol["latency"]["p99_ms"],
                       "at_rate": args.rate,
                       "met": ol["latency"]["p99_ms"] < TARGETS["ack_p99_ms"]
                       and ol["acked"] == ol["sent"]},
        "accepted_per_s": {"target": TARGETS["accepted_per_s"],
                           "value": lb["closed"]["acked_per_s"],
                           "met": lb["closed"]["acked_per_s"] >= TARGETS["accepted_per_s"]},
        "every_ack_committed": {"target": 0, "value": lb["committed"]["mismatches"],
                                "met": lb["committed"]["mismatches"] == 0},
        "api_calls_per_annotation": {
            "target": TARGETS["api_calls_per_annotation"],
            "value": lb["steady_state_api"]["requests_per_annotation"],
            "met": (lb["steady_state_api"]["requests_per_annotation"] or 1)
            <= TARGETS["api_calls_per_annotation"]},
    }
    result = {
        "bench": "webhook", "mode": "quick" if args.quick else "full",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "server_cpus": server_cpus,
                    "client_cpus": client_cpus, "python": sys.version.split()[0],
                    "uvicorn": uvicorn.__version__, "orjson": orjson.__version__,
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "senders": senders, "rate": args.rate, "warmup": warmup, "closed_events": closed,
        "open_seconds": open_s, "data_rows": rows, "poll_interval_s": args.poll_interval,
        "capture": CAPTURE, "body_bytes": len(Events().body(0)),
        "start_s": svc.start_s,
        "targets": tgt, "labelbridge": lb, "floor": floor,
        "other_load": busy_before + [x for x in other_load() if x not in busy_before],
        "total_s": round(time.perf_counter() - t_all, 1),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(summarize(result))
    print(f"\nwritten {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}"
          f" in {result['total_s']:.0f} s")
    broken = (lb["committed"]["mismatches"] or not lb["delivery"]["ok"]
              or lb["final_status"]["dead_letters"])
    return 1 if broken else 0


def child_main(argv: list[str]) -> int:
    role, rest = argv[0], argv[1:]
    if role == "floor":
        child_floor(int(rest[0]))
        return 0
    if role == "load":
        answer = child_load(rest[0])
    else:
        raise SystemExit(f"unknown child role {role}")
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # internal: the processes this bench starts
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
