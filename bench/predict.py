"""Prediction benchmark: index build, preparation and ``/predict``, each against a floor.

    python bench/predict.py [--rows 100000] [--quick]

1. Generates (or reuses) a synthetic Labelbox export under ``bench/out/`` (``bench/synthetic.py``).
2. Index build: ``index_export`` against the floor "read the file line by line and
   ``orjson.loads`` each line" (same machine, same run, the floor in one process, the index as
   it runs by default: one worker process per CPU for a large export; also timed in one
   process); peak RSS of the indexing process and its children, for the export and for one
   4x smaller.
3. Preparation: every row converted and validated for ``tests.helpers.IMAGE_CONFIG``, against
   the same orjson parse floor (rows/s of preparing over rows/s of parsing the export).
4. ``/predict``: labelbridge (``python -m labelbridge serve``) against a no-op FastAPI app
   (``bench/floor_app.py``), both under uvicorn, pinned to the same CPUs; the load generator is
   a separate process on the other CPU with one keep-alive connection per server, sending
   Label Studio's request shape. One-task latency (the two servers alternate in chunks, so drift
   hits both alike) and 100-task batch throughput (one client, then two).

Prints a table and writes ``bench/out/predict.json`` (``predict-quick.json`` with ``--quick``).
Performance is reported as ratios against the floors and against the issue's absolute targets;
nothing here is a pass/fail test (the exit status is 0 unless something broke or answers were
wrong).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench import synthetic  # noqa: E402
from bench.common import (clean_env, cpu_plan, log, percentile, pinned, tree_rss_mb,  # noqa: E402
                          verdict)

OUT = ROOT / "bench" / "out"
SCRIPT = Path(__file__).resolve()
CAPTURE = "e2e-flow/ml-backend_POST-predict_dm-retrieve-predictions.json"
TARGETS = {"latency_p99_ms": 1.2, "batch_tasks_per_s": 25_000, "index_vs_parse": 0.5,
           "index_peak_rss_mb": 200, "prepare_vs_parse": 0.25}
BATCH = 100


# ----- small helpers ------------------------------------------------------------------------





def run_child(args: list[str], env: dict | None = None, script: Path = SCRIPT, *,
              kernel_peak: bool = True) -> tuple[dict, float]:
    """Run ``<script> --child ...`` (``bench/predict.py`` unless told); (its JSON answer, peak
    RSS in MB of the child and its own children together, sampled every 10 ms, and never less
    than the child's own peak, ``ru_maxrss``, unless ``kernel_peak`` is False: that one counts
    the parent's pages the child had between fork and exec)."""
    proc = subprocess.Popen([sys.executable, str(script), "--child", *args],
                            stdout=subprocess.PIPE, env=env, cwd=ROOT)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()  # type: ignore[union-attr]
    done.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child alone
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed with exit status {proc.returncode}")
    return (json.loads(out.decode().strip().splitlines()[-1]),
            max(peak[0], usage.ru_maxrss / 1024 if kernel_peak else 0))  # ru_maxrss: KB






# ----- step 2: index build ------------------------------------------------------------------

def parse_floor(path: Path) -> float:
    """Seconds to read ``path`` line by line and ``orjson.loads`` every line (with the same
    1 MiB read buffer the indexer uses, so the floor is not slowed by short reads)."""
    loads = orjson.loads
    started = time.perf_counter()
    with open(path, "rb", buffering=1 << 20) as fh:
        for line in fh:
            loads(line)
    return time.perf_counter() - started


def remove_index(index: Path) -> None:
    """The index file and what lives beside it (its payload parts, -wal, -shm)."""
    for f in index.parent.glob(index.name + "*"):
        f.unlink()


def bench_index(export: Path, small: Path, data_dir: Path, runs: int) -> dict:
    """Floor and index runs alternate, so a slow spell of this VM hits both alike; each keeps
    its best run. The index runs as it does by default (one reader per CPU for a large export)
    and, for comparison, in one process."""
    index = data_dir / "predictions.sqlite3"
    floor, best, single, rss = float("inf"), None, None, 0.0
    one_index = data_dir / "one.sqlite3"
    for _ in range(runs):
        floor = min(floor, parse_floor(export))
        remove_index(index)  # a first build: deleting a GB-sized old index takes seconds here
        answer, peak = run_child(["index", str(export), str(index)])
        rss = max(rss, peak)
        if best is None or answer["seconds"] < best["seconds"]:
            best = answer
        remove_index(one_index)
        one, _ = run_child(["index", str(export), str(one_index), "1"])
        if single is None or one["seconds"] < single["seconds"]:
            single = one
    assert best is not None and single is not None
    remove_index(one_index)
    log(f"  orjson parse floor {floor:.2f} s; index_export {best['seconds']:.2f} s with "
        f"{best['readers']} readers ({single['seconds']:.2f} s in one), peak RSS {rss:.0f} MB")
    small_answer, small_rss = run_child(["index", str(small), str(data_dir / "small.sqlite3")])
    remove_index(data_dir / "small.sqlite3")
    _, idle_rss = run_child(["idle"])
    size = export.stat().st_size
    return {
        "rows": best["rows"], "model_version": best["model_version"],
        "export_mb": round(size / 2**20, 1),
        "parse_floor_s": round(floor, 3), "parse_floor_rows_per_s": round(best["rows"] / floor),
        "parse_floor_mb_per_s": round(size / 2**20 / floor, 1),
        "index_s": round(best["seconds"], 3), "index_rows_per_s": round(best["rows"] / best["seconds"]),
        "index_readers": best["readers"],
        "ratio_parse_over_index": round(floor / best["seconds"], 3),
        "one_process_index_s": round(single["seconds"], 3),
        "one_process_rows_per_s": round(single["rows"] / single["seconds"]),
        "one_process_ratio": round(floor / single["seconds"], 3),
        "peak_rss_mb": round(rss, 1),
        "small_export_rows": small_answer["rows"], "small_peak_rss_mb": round(small_rss, 1),
        "small_index_s": round(small_answer["seconds"], 3),
        "interpreter_rss_mb": round(idle_rss, 1),
        "runs": runs,
    }


def child_index(export: str, index: str, workers: str | None = None) -> dict:
    from labelbridge.labelbox.export import Selection
    from labelbridge.labelbox.masks import MaskSource
    from labelbridge.predictions.indexer import index_export

    started = time.perf_counter()
    # as `labelbridge index` and `serve` build it (masks read without a key): the same
    # fingerprint, so the server serves this index and the predictions prepared into it
    result = index_export(Path(export), Path(index), Selection(), masks=MaskSource(),
                          workers=int(workers) if workers else None)
    return {"seconds": time.perf_counter() - started, "rows": result.rows,
            "model_version": result.model_version, "readers": result.readers}


def child_idle() -> dict:
    import importlib
    importlib.import_module("labelbridge.predictions.indexer")  # what the index child imports, nothing done
    return {}


# ----- step 3: prepare ----------------------------------------------------------------------

def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (prepare workers)."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def child_prepare(index: str, model_version: str) -> dict:
    import importlib
    import logging

    from labelbridge import compiled
    from labelbridge.labelstudio.mapping import Overrides
    from labelbridge.predictions.predictor import Predictor
    from labelbridge.predictions.prepare_worker import worker_count
    from labelbridge.predictions.store import PredictionStore

    from tests.helpers import IMAGE_CONFIG

    logging.basicConfig(level=logging.WARNING)
    # the server has label-studio-sdk imported from its start (labelbridge.service.server):
    # the parse of the label config is timed, the import is not
    importlib.import_module("label_studio_sdk.label_interface")
    store = PredictionStore(Path(index))
    predictor = Predictor(store, Overrides.load(None), model_version)
    started, cpu = time.perf_counter(), _cpu_seconds()
    ctx = predictor.prepare(IMAGE_CONFIG)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    report = ctx.report.as_dict()
    return {"seconds": seconds, "cpu_seconds": cpu, "rows": store.count(),
            "workers": worker_count(store.count()), "converted": report["converted"],
            "skipped": report["skipped"], "invalid_regions": ctx.invalid,
            "converters": compiled.summary()}


def bench_prepare(index: Path, model_version: str) -> dict:
    answer, rss = run_child(["prepare", str(index), model_version])
    log(f"  prepared {answer['rows']:,} rows in {answer['seconds']:.1f} s "
        f"({answer['workers']} converting process(es), {answer['cpu_seconds']:.1f} CPU s in all, "
        f"converters {answer['converters']})")
    return {"rows": answer["rows"], "prepare_s": round(answer["seconds"], 2),
            "rows_per_s": round(answer["rows"] / answer["seconds"]),
            "processes": answer["workers"], "converters": answer["converters"],
            "cpu_us_per_row": round(answer["cpu_seconds"] / answer["rows"] * 1e6),
            "converted": answer["converted"], "skipped": answer["skipped"],
            "invalid_regions": answer["invalid_regions"], "peak_rss_mb": round(rss, 1)}


# ----- step 4: the servers ------------------------------------------------------------------

def ls_body(rows: list[int], start_id: int) -> bytes:
    """A /predict body shaped like Label Studio's (dm-retrieve-predictions capture)."""
    from tests.helpers import IMAGE_CONFIG, capture

    captured = capture(CAPTURE)
    template = captured["tasks"][0]
    tasks = []
    for k, i in enumerate(rows):
        task = dict(template)
        task.update(id=start_id + k, inner_id=start_id + k,
                    data={"image": synthetic.row_data(i), "global_key": synthetic.global_key(i),
                          "data_row_id": synthetic.data_row_id(i)})
        tasks.append(task)
    return orjson.dumps({"tasks": tasks, "project": captured["project"],
                         "label_config": IMAGE_CONFIG, "params": captured["params"]})


def write_bodies(path: Path, rows: int, count: int, size: int, seed: int) -> Path:
    rnd = random.Random(seed)
    with open(path, "wb") as fh:
        for n in range(count):
            fh.write(ls_body([rnd.randrange(rows) for _ in range(size)], 1 + n * size) + b"\n")
    return path




def start_servers(export: Path, data_dir: Path, cpus: list[int]) -> dict:
    from tests.procs import free_port, start_process

    lb_port, floor_port = free_port(), free_port()
    lb_env = clean_env(LABELBRIDGE_EXPORT=str(export), LABELBRIDGE_DATA_DIR=str(data_dir),
                       LABELBRIDGE_HOST="127.0.0.1", LABELBRIDGE_PORT=str(lb_port),
                       LOG_LEVEL="WARNING")
    index_inode = (data_dir / "predictions.sqlite3").stat().st_ino   # a rebuild replaces it
    started = time.perf_counter()
    lb = start_process(pinned([sys.executable, "-m", "labelbridge", "serve"], cpus), lb_env,
                       f"http://127.0.0.1:{lb_port}/health", data_dir / "labelbridge.log",
                       timeout=300)
    lb_start = time.perf_counter() - started
    if (data_dir / "predictions.sqlite3").stat().st_ino != index_inode:
        raise SystemExit("labelbridge serve rebuilt the index the bench built (its fingerprint "
                         "differs): /predict would be measured while it prepares again")
    floor = start_process(pinned([sys.executable, "-m", "uvicorn", "bench.floor_app:app",
                                  "--host", "127.0.0.1", "--port", str(floor_port),
                                  "--log-level", "warning", "--no-access-log"], cpus),
                          clean_env(), f"http://127.0.0.1:{floor_port}/health",
                          data_dir / "floor.log")
    return {"labelbridge": (lb, lb_port), "floor": (floor, floor_port),
            "labelbridge_start_s": lb_start}


def verify(lb_port: int, floor_port: int, batch_body: bytes, rows: int) -> dict:
    """Answers are right: one element per task, the row's regions, /setup's model version."""
    import httpx

    from tests.helpers import IMAGE_CONFIG

    problems: list[str] = []
    with httpx.Client(timeout=60) as client:
        health = client.get(f"http://127.0.0.1:{lb_port}/health").json()
        if health.get("index_rows") != rows:
            problems.append(f"/health index_rows {health.get('index_rows')} != {rows}")
        setup = client.post(f"http://127.0.0.1:{lb_port}/setup",
                            json={"project": "1.1", "schema": IMAGE_CONFIG}).json()
        version = setup.get("model_version")
        body = orjson.loads(batch_body)
        answers = {}
        for name, port in (("labelbridge", lb_port), ("floor", floor_port)):
            r = client.post(f"http://127.0.0.1:{port}/predict", content=batch_body,
                            headers={"Content-Type": "application/json"})
            if r.status_code != 200:
                problems.append(f"{name}: /predict answered {r.status_code}")
                continue
            answers[name] = r.json().get("results")
            if not isinstance(answers[name], list) or len(answers[name]) != len(body["tasks"]):
                problems.append(f"{name}: {len(answers[name] or [])} results for "
                                f"{len(body['tasks'])} tasks")
        checked = 0
        for task, prediction in zip(body["tasks"], answers.get("labelbridge") or []):
            row = int(task["data"]["global_key"].split("-")[1].split(".")[0])
            prefix = f"c{row:010d}"
            if not isinstance(prediction, dict) or not prediction.get("result"):
                problems.append(f"row {row}: no prediction")
                continue
            if prediction.get("model_version") != version:
                problems.append(f"row {row}: model_version {prediction.get('model_version')!r} "
                                f"!= /setup's {version!r}")
            ids = {item.get("id") for item in prediction["result"]}
            if not all(isinstance(i, str) and i.startswith(prefix) for i in ids):
                problems.append(f"row {row}: region ids of another row: {sorted(ids)[:3]}")
            checked += 1
    return {"ok": not problems, "problems": problems[:20], "model_version": version,
            "checked_predictions": checked}


def run_loadgens(specs: list[dict]) -> list[dict]:
    """Run one load generator process per spec, at the same time; their answers in order."""
    paths, procs = [], []
    for n, spec in enumerate(specs):
        path = OUT / f"loadgen-{os.getpid()}-{n}.json"
        path.write_text(json.dumps(spec))
        paths.append(path)
        procs.append(subprocess.Popen([sys.executable, str(SCRIPT), "--child", "loadgen",
                                       str(path)], stdout=subprocess.PIPE, cwd=ROOT))
    answers = []
    for proc, path in zip(procs, paths):
        out, _ = proc.communicate()
        path.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed with exit status {proc.returncode}")
        answers.append(json.loads(out.decode().strip().splitlines()[-1]))
    return answers


def latency_summary(samples_us: list[float]) -> dict:
    s = sorted(samples_us)
    return {"requests": len(s), "p50_ms": round(percentile(s, 50) / 1000, 3),
            "p90_ms": round(percentile(s, 90) / 1000, 3),
            "p99_ms": round(percentile(s, 99) / 1000, 3),
            "max_ms": round(s[-1] / 1000, 3),
            "mean_ms": round(sum(s) / len(s) / 1000, 3)}


def bench_http(servers: dict, one_bodies: Path, batch_bodies: Path, client_cpus: list[int],
               requests: int, warmup: int, seconds: float) -> dict:
    _, lb_port = servers["labelbridge"]
    _, floor_port = servers["floor"]
    targets = [{"name": "labelbridge", "port": lb_port}, {"name": "floor", "port": floor_port}]
    log(f"  one-task latency: {requests:,} requests per server after {warmup} warm-up")
    lat, = run_loadgens([{"mode": "latency", "targets": targets, "bodies": str(one_bodies),
                          "requests": requests, "warmup": warmup, "chunk": 500,
                          "cpus": client_cpus}])
    out: dict = {"latency_one_task": {name: {**latency_summary(lat[name]["samples_us"]),
                                             "errors": lat[name]["errors"]}
                                      for name in ("labelbridge", "floor")}}
    tp: dict = {}
    for clients in (1, 2):
        for t in targets:
            log(f"  100-task batches, {clients} client(s), {t['name']}: {seconds:g} s")
            start_at = time.time() + 2.0
            specs = [{"mode": "throughput", "targets": [t], "bodies": str(batch_bodies),
                      "warmup": 20, "seconds": seconds, "start_at": start_at,
                      "tasks_per_body": BATCH, "cpus": client_cpus, "offset": 7 * c}
                     for c in range(clients)]
            answers = run_loadgens(specs)
            tasks = sum(a["tasks"] for a in answers)
            elapsed = max(a["seconds"] for a in answers)
            tp.setdefault(f"{clients}_client", {})[t["name"]] = {
                "tasks_per_s": round(tasks / elapsed), "requests": sum(a["requests"] for a in answers),
                "seconds": round(elapsed, 2), "errors": sum(a["errors"] for a in answers),
                "response_mb_per_s": round(sum(a["bytes"] for a in answers) / elapsed / 2**20, 1),
                "latency_p50_ms": round(percentile(sorted(
                    x for a in answers for x in a["samples_us"]), 50) / 1000, 2)}
    out["batch_100"] = tp
    return out


# ----- the load generator (a child process) -------------------------------------------------

class Connection:
    """One keep-alive HTTP/1.1 connection over a raw socket; reads by Content-Length."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.scratch = bytearray(1 << 20)

    def request_bytes(self, body: bytes) -> bytes:
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "User-Agent: heartex/1.23.2\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\n"
                "Connection: keep-alive\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        return head.encode() + body

    def send(self, raw: bytes) -> tuple[int, int]:
        """(status, body length) of the answer to ``raw``; the body is read and dropped."""
        sock = self.sock
        sock.sendall(raw)
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        head = buf[:end].decode("latin-1")
        status = int(head[9:12])
        length = None
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise ConnectionError("answer without Content-Length")
        have = len(buf) - end - 4
        if have >= length:
            self.buf = buf[end + 4 + length:]
            return status, length
        self.buf = b""
        remaining, scratch = length - have, self.scratch
        while remaining > 0:
            n = sock.recv_into(scratch, min(remaining, len(scratch)))
            if not n:
                raise ConnectionError("server closed the connection")
            remaining -= n
        return status, length


def child_loadgen(spec_path: str) -> dict:
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("cpus"):
        os.sched_setaffinity(0, spec["cpus"])
    bodies = Path(spec["bodies"]).read_bytes().splitlines()
    conns = {t["name"]: Connection(t["port"]) for t in spec["targets"]}
    raws = {name: [c.request_bytes(b) for b in bodies] for name, c in conns.items()}
    clock = time.perf_counter_ns
    if spec["mode"] == "latency":
        samples: dict[str, list[float]] = {name: [] for name in conns}
        errors = dict.fromkeys(conns, 0)
        for name, conn in conns.items():
            for k in range(spec["warmup"]):
                conn.send(raws[name][k % len(bodies)])
        k = 0
        while any(len(s) < spec["requests"] for s in samples.values()):
            for name, conn in conns.items():  # alternate in chunks: drift hits both alike
                todo = min(spec["chunk"], spec["requests"] - len(samples[name]))
                mine, raw = samples[name], raws[name]
                for j in range(todo):
                    t0 = clock()
                    status, _ = conn.send(raw[(k + j) % len(raw)])
                    mine.append((clock() - t0) / 1000)
                    if status != 200:
                        errors[name] += 1
            k += spec["chunk"]
        return {name: {"samples_us": samples[name], "errors": errors[name]} for name in conns}
    (name, conn), = conns.items()
    raw = raws[name]
    offset = spec.get("offset", 0)
    for k in range(spec["warmup"]):
        conn.send(raw[(offset + k) % len(raw)])
    while time.time() < spec["start_at"]:
        time.sleep(0.001)
    deadline = time.perf_counter() + spec["seconds"]
    started = time.perf_counter()
    requests = errors = received = 0
    samples_us = []
    while True:
        t0 = clock()
        status, length = conn.send(raw[(offset + requests) % len(raw)])
        samples_us.append((clock() - t0) / 1000)
        requests += 1
        received += length
        if status != 200:
            errors += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - started
    return {"requests": requests, "tasks": requests * spec["tasks_per_body"], "seconds": elapsed,
            "errors": errors, "bytes": received, "samples_us": samples_us}




# ----- report -------------------------------------------------------------------------------



def summarize(res: dict) -> str:
    ix, pr, http = res["index"], res["prepare"], res["http"]
    lat = http["latency_one_task"]
    b1, b2 = http["batch_100"]["1_client"], http["batch_100"]["2_client"]
    t = res["targets"]
    lines = [
        f"labelbridge prediction bench — {res['export']['rows']:,} rows x "
        f"{res['export']['regions']} regions ({res['export']['mb']:.0f} MB export), "
        f"{res['machine']['cpus']} CPUs, servers on CPU {res['machine']['server_cpus']}, "
        f"client on CPU {res['machine']['client_cpus']}",
        "",
        f"{'measure':<44}{'labelbridge':>14}{'floor':>14}{'ratio':>9}  target",
        f"{'index build, ' + str(ix['index_readers']) + ' readers (rows/s)':<44}{ix['index_rows_per_s']:>14,}{ix['parse_floor_rows_per_s']:>14,}"
        f"{ix['ratio_parse_over_index']:>9.2f}  >= {TARGETS['index_vs_parse']} x parse: "
        f"{verdict(t['index_vs_parse']['met'])}",
        f"{'  same, in one process (rows/s)':<44}{ix['one_process_rows_per_s']:>14,}"
        f"{ix['parse_floor_rows_per_s']:>14,}{ix['one_process_ratio']:>9.2f}",
        f"{'index build peak RSS (MB)':<44}{ix['peak_rss_mb']:>14.0f}{'':>14}{'':>9}  < "
        f"{TARGETS['index_peak_rss_mb']} MB: {verdict(t['index_peak_rss_mb']['met'])}",
        f"{'  same, 4x smaller export (MB)':<44}{ix['small_peak_rss_mb']:>14.0f}"
        f"{'':>14}{'':>9}  (interpreter + imports alone: {ix['interpreter_rss_mb']:.0f} MB)",
        f"{'prepare: convert + validate (rows/s)':<44}{pr['rows_per_s']:>14,}"
        f"{ix['parse_floor_rows_per_s']:>14,}{pr['rows_per_s'] / ix['parse_floor_rows_per_s']:>9.2f}"
        f"  >= {TARGETS['prepare_vs_parse']} x parse: {verdict(t['prepare_vs_parse']['met'])}"
        f" ({pr['prepare_s']:.1f} s, {pr['processes']} process(es), "
        f"{pr['cpu_us_per_row']} us CPU a row, converters {pr['converters']})",
    ]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        a, b = lat["labelbridge"][key], lat["floor"][key]
        extra = (f"<= {TARGETS['latency_p99_ms']} ms: {verdict(t['latency_p99_ms']['met'])}"
                 if key == "p99_ms" else "")
        lines.append(f"{'/predict 1 task, ' + label + ' (ms)':<44}{a:>14.3f}{b:>14.3f}"
                     f"{a / b:>9.2f}  {extra}")
    for label, b in (("1 client", b1), ("2 clients", b2)):
        a, f = b["labelbridge"]["tasks_per_s"], b["floor"]["tasks_per_s"]
        extra = (f">= {TARGETS['batch_tasks_per_s']:,}: {verdict(t['batch_tasks_per_s']['met'])}"
                 if label == "1 client" else "")
        lines.append(f"{'/predict 100-task batches, ' + label + ' (tasks/s)':<44}{a:>14,}{f:>14,}"
                     f"{a / f:>9.2f}  {extra}")
    v = res["verify"]
    lines += ["", f"answers checked: {'ok' if v['ok'] else 'WRONG: ' + '; '.join(v['problems'])} "
              f"({v['checked_predictions']} predictions, model_version {v['model_version']})",
              f"errors (non-200): latency {lat['labelbridge']['errors']}/{lat['floor']['errors']},"
              f" batches {b1['labelbridge']['errors'] + b2['labelbridge']['errors']}/"
              f"{b1['floor']['errors'] + b2['floor']['errors']} (labelbridge/floor)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=None, help="data rows (default 100000; 5000 "
                    "with --quick)")
    ap.add_argument("--regions", type=int, default=10, help="objects per row (default 10)")
    ap.add_argument("--quick", action="store_true", help="smoke check: small export, short runs")
    ap.add_argument("--requests", type=int, default=None, help="one-task requests per server")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per throughput run")
    ap.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = ap.parse_args(argv)

    rows = args.rows or (5_000 if args.quick else 100_000)
    requests = args.requests or (1_000 if args.quick else 5_000)
    warmup = 200 if args.quick else 500
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    out_path = args.out or OUT / ("predict-quick.json" if args.quick else "predict.json")
    OUT.mkdir(parents=True, exist_ok=True)
    server_cpus, client_cpus = cpu_plan()
    t_all = time.perf_counter()

    log(f"[1/4] synthetic export: {rows:,} rows x {args.regions} regions")
    export = OUT / f"export-{rows}x{args.regions}.ndjson"
    small_rows = max(rows // 4, 1)
    small = OUT / f"export-{small_rows}x{args.regions}.ndjson"
    started = time.perf_counter()
    made = synthetic.ensure_export(export, rows, args.regions, log=log)
    made_small = synthetic.ensure_export(small, small_rows, args.regions, log=log)
    gen_s = time.perf_counter() - started
    data_dir = OUT / f"data-{rows}x{args.regions}"
    data_dir.mkdir(parents=True, exist_ok=True)

    log("[2/4] index build")
    runs = 3 if export.stat().st_size < 300 * 2**20 else 2
    index = bench_index(export, small, data_dir, runs)

    log("[3/4] prepare predictions for IMAGE_CONFIG")
    prepare = bench_prepare(data_dir / "predictions.sqlite3", index["model_version"])

    log("[4/4] /predict: labelbridge vs no-op FastAPI floor")
    os.sched_setaffinity(0, client_cpus)  # from here this process only waits: off the servers
    one = write_bodies(OUT / "bodies-1.ndjson", rows, 1000, 1, seed=1)
    batch = write_bodies(OUT / "bodies-100.ndjson", rows, 60, BATCH, seed=2)
    from tests.procs import stop_process

    servers = start_servers(export, data_dir, server_cpus)
    try:
        check = verify(servers["labelbridge"][1], servers["floor"][1],
                       batch.read_bytes().splitlines()[0], rows)
        http = bench_http(servers, one, batch, client_cpus, requests, warmup, seconds)
    finally:
        for proc, _ in (servers["labelbridge"], servers["floor"]):
            stop_process(proc)

    import uvicorn

    lat = http["latency_one_task"]["labelbridge"]
    b1 = http["batch_100"]["1_client"]["labelbridge"]
    result = {
        "bench": "predict", "mode": "quick" if args.quick else "full",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "server_cpus": server_cpus,
                    "client_cpus": client_cpus, "python": sys.version.split()[0],
                    "uvicorn": uvicorn.__version__, "orjson": orjson.__version__,
                    "uvloop": _has("uvloop"), "httptools": _has("httptools")},
        "export": {"rows": rows, "regions": args.regions, "mb": index["export_mb"],
                   "path": str(export.relative_to(ROOT)), "generated": made or made_small,
                   "generate_s": round(gen_s, 1)},
        "index": index, "prepare": prepare,
        "server_start_s": round(servers["labelbridge_start_s"], 2),
        "http": http, "verify": check,
        "targets": {
            "latency_p99_ms": {"target": TARGETS["latency_p99_ms"], "value": lat["p99_ms"],
                               "met": lat["p99_ms"] <= TARGETS["latency_p99_ms"]},
            "batch_tasks_per_s": {"target": TARGETS["batch_tasks_per_s"],
                                  "value": b1["tasks_per_s"],
                                  "met": b1["tasks_per_s"] >= TARGETS["batch_tasks_per_s"]},
            "index_vs_parse": {"target": TARGETS["index_vs_parse"],
                               "value": index["ratio_parse_over_index"],
                               "met": index["ratio_parse_over_index"] >= TARGETS["index_vs_parse"]},
            "prepare_vs_parse": {"target": TARGETS["prepare_vs_parse"],
                                 "value": round(prepare["rows_per_s"]
                                                / index["parse_floor_rows_per_s"], 3),
                                 "met": prepare["rows_per_s"] / index["parse_floor_rows_per_s"]
                                 >= TARGETS["prepare_vs_parse"]},
            "index_peak_rss_mb": {"target": TARGETS["index_peak_rss_mb"],
                                  "value": index["peak_rss_mb"],
                                  "met": index["peak_rss_mb"] < TARGETS["index_peak_rss_mb"]},
        },
        "total_s": round(time.perf_counter() - t_all, 1),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(summarize(result))
    print(f"\nwritten {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}"
          f" in {result['total_s']:.0f} s")
    return 0 if check["ok"] else 1


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def child_main(argv: list[str]) -> int:
    role, rest = argv[0], argv[1:]
    if role == "index":
        answer = child_index(*rest)
    elif role == "idle":
        answer = child_idle()
    elif role == "prepare":
        answer = child_prepare(rest[0], rest[1])
    elif role == "loadgen":
        answer = child_loadgen(rest[0])
    else:
        raise SystemExit(f"unknown child role {role}")
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # internal: the processes this bench starts
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
