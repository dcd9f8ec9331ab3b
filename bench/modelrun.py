"""Model-run bench: the prediction index built from a Labelbox model run streamed through the
SDK, against the same rows read from a file, in the same run.

    python bench/modelrun.py [--rows 20000] [--regions 10] [--quick]

1. Generates (or reuses) a synthetic model-run export under ``bench/out/`` (``synthetic.py``).
2. Starts the Labelbox stand-in as its own process on the load-generator CPU, holding that
   run (``python -m tests.lbstandin``, chunks of ``--chunk-mb``).
3. Each measurement is a fresh child process on the server CPU (peak RSS of the process tree):
   * **file**: ``index_export`` of the file, in one process (as the stream is) and as it runs
     by default (one reader per CPU for an export of 32 MiB or more);
   * **stream**: ``RunSource.build``: ``model_run.export`` + ``get_buffered_stream()`` from the
     stand-in, each row compacted and indexed as it comes;
   * **SDK alone**: the same stream, rows counted and dropped: what the SDK and the stand-in
     cost before labelbridge does anything. The stand-in's own CPU seconds for each stream
     (building and serving the export) are read from ``/proc`` and named apart.
   Runs alternate, each keeps its best (this VM is noisy).

Writes ``bench/out/modelrun.json`` (``modelrun-quick.json`` with ``--quick``). The target:
the stream build at least 0.5x the file build's rows/s. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import synthetic  # noqa: E402
from bench.common import clean_env, cpu_plan, log, pinned, verdict  # noqa: E402
from bench.predict import remove_index, run_child  # noqa: E402

OUT = ROOT / "bench" / "out"
SCRIPT = Path(__file__).resolve()
API_KEY = "bench-key"
TARGET = 0.5


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StandIn:
    """The Labelbox stand-in as a process, holding the run of ``export``."""

    def __init__(self, export: Path, chunk_bytes: int, cpus: list[int], work: Path) -> None:
        setup = work / "standin-setup.json"
        setup.write_text(json.dumps({"export_chunk_bytes": chunk_bytes, "model_runs": [{
            "model_id": synthetic.MODEL_ID, "run_id": synthetic.RUN_ID, "name": "bench-run",
            "export_rows_file": str(export)}]}))
        self.proc = subprocess.Popen(
            pinned([sys.executable, "-m", "tests.lbstandin", "--api-key", API_KEY,
                    "--setup", str(setup)], cpus),
            stdout=subprocess.PIPE, env=clean_env(), cwd=ROOT, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"the stand-in did not start: {line!r}")
        self.url = line.split()[1]
        self.pid = self.proc.pid  # the pinning wrapper execs the stand-in: the same process

    def env(self) -> dict[str, str]:
        return clean_env(LABELBOX_ENDPOINT=self.url + "/graphql",
                         LABELBOX_REST_ENDPOINT=self.url + "/api/v1",
                         LABELBOX_APP_URL=self.url)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


# ----- children -----------------------------------------------------------------------------

def _cpu() -> float:
    """CPU seconds of this process and its finished children (readers of the file path)."""
    me, kids = os.times()[:2], os.times()[2:4]
    return sum(me) + sum(kids)


def _client():
    from labelbridge.labelbox.model_runs import ModelRunClient
    env = os.environ
    return ModelRunClient(API_KEY, endpoint=env["LABELBOX_ENDPOINT"],
                          rest_endpoint=env["LABELBOX_REST_ENDPOINT"],
                          app_url=env["LABELBOX_APP_URL"])


def child_file(export: str, index: str, workers: str) -> dict:
    from labelbridge.labelbox.export import Selection
    from labelbridge.predictions.indexer import index_export

    started, cpu = time.perf_counter(), _cpu()
    result = index_export(Path(export), Path(index), Selection("predictions", synthetic.RUN_ID),
                          workers=int(workers) if workers != "default" else None)
    return {"seconds": time.perf_counter() - started, "cpu_s": _cpu() - cpu, "rows": result.rows,
            "readers": result.readers, "model_version": result.model_version}


def child_stream(index: str) -> dict:
    from labelbridge.predictions.sources import RunSource

    source = RunSource(_client(), run_id=synthetic.RUN_ID)
    started, cpu = time.perf_counter(), _cpu()
    offer = source.offer()
    result = source.build(offer, Path(index))
    return {"seconds": time.perf_counter() - started, "cpu_s": _cpu() - cpu, "rows": result.rows,
            "model_version": result.model_version}


def child_sdk(_: str = "") -> dict:
    client = _client()
    started, cpu = time.perf_counter(), _cpu()
    rows = sum(1 for _ in client.export(synthetic.RUN_ID).rows)
    return {"seconds": time.perf_counter() - started, "cpu_s": _cpu() - cpu, "rows": rows}


CHUNK_QUERY = ("query GetExportFileFromOffsetPyApi($where: WhereUniqueIdInput, $streamType: "
               "TaskStreamType!, $offset: UInt64!){task(where: $where){exportFileFromOffset("
               "streamType: $streamType, offset: $offset){offsets {start end} lines {start end} "
               "file}}}")


def child_wire(_: str = "") -> dict:
    """The stand-in's own cost: the same export created and its chunks fetched with plain
    HTTP calls (what any client waits for), no SDK parsing, no temporary file."""
    import labelbox as lb
    import requests

    client = _client().client
    started, cpu = time.perf_counter(), _cpu()
    task = client.get_model_run(synthetic.RUN_ID).export(params={"predictions": True,
                                                                 "data_row_details": True})
    task.wait_till_done()
    total = task.get_total_file_size(lb.StreamType.RESULT)
    offset = rows = 0
    with requests.Session() as http:
        while offset < total:
            answer = http.post(os.environ["LABELBOX_ENDPOINT"], headers={
                "Authorization": f"Bearer {API_KEY}"}, json={"query": CHUNK_QUERY, "variables": {
                    "where": {"id": task.uid}, "streamType": "RESULT", "offset": str(offset)}})
            chunk = answer.json()["data"]["task"]["exportFileFromOffset"]
            rows += http.get(chunk["file"]).content.count(b"\n")
            offset = chunk["offsets"]["end"] + 1
    return {"seconds": time.perf_counter() - started, "cpu_s": _cpu() - cpu, "rows": rows}


def child_idle(_: str = "") -> dict:
    _client()  # what the stream child holds before it exports anything: interpreter + SDK
    from labelbridge.predictions import sources  # noqa: F401
    return {"seconds": 0.0, "cpu_s": 0.0, "rows": 0}


CHILDREN = {"file": child_file, "stream": child_stream, "sdk": child_sdk, "wire": child_wire,
            "idle": child_idle}


# ----- the bench ----------------------------------------------------------------------------

def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def bench(export: Path, work: Path, standin: StandIn, runs: int, server_cpus: list[int]
          ) -> dict:
    index = work / "predictions.sqlite3"
    results: dict[str, list[dict]] = {"file_one": [], "file_default": [], "stream": [],
                                      "sdk": [], "wire": []}

    def child(name: str, args: list[str], env=None) -> dict:
        remove_index(index)
        before = cpu_seconds(standin.pid)
        answer, rss = run_child(args, env=env, script=SCRIPT)
        answer.update(rss_mb=rss, standin_cpu_s=cpu_seconds(standin.pid) - before)
        results[name].append(answer)
        return answer

    env = standin.env()
    os.sched_setaffinity(0, set(server_cpus))  # the children inherit the server CPUs
    for n in range(runs):
        child("file_one", ["file", str(export), str(index), "1"], env)
        child("stream", ["stream", str(index)], env)
        child("file_default", ["file", str(export), str(index), "default"], env)
        child("sdk", ["sdk"], env)
        child("wire", ["wire"], env)
        log(f"  run {n + 1}/{runs}: " + ", ".join(
            f"{k} {v[-1]['seconds']:.2f} s" for k, v in results.items()))
    remove_index(index)
    _, idle_rss = run_child(["idle"], env=env, script=SCRIPT)
    rows = best(results["file_one"])["rows"]
    assert all(r["rows"] == rows for v in results.values() for r in v), "row counts differ"
    out = {"rows": rows, "export_mb": round(export.stat().st_size / 2**20, 1), "runs": runs,
           "sdk_interpreter_rss_mb": round(idle_rss, 1)}
    for name, measured in results.items():
        b = best(measured)
        out[name] = {"seconds": round(b["seconds"], 3), "rows_per_s": round(rows / b["seconds"]),
                     "cpu_s": round(min(r["cpu_s"] for r in measured), 3),
                     "peak_rss_mb": round(max(r["rss_mb"] for r in measured), 1),
                     "standin_cpu_s": round(b["standin_cpu_s"], 3)}
        if "readers" in b:
            out[name]["readers"] = b["readers"]
    out["ratio_stream_over_file_one"] = round(out["file_one"]["seconds"] /
                                              out["stream"]["seconds"], 3)
    out["ratio_stream_over_file_default"] = round(out["file_default"]["seconds"] /
                                                  out["stream"]["seconds"], 3)
    # the stand-in is not Labelbox: its own serving time is named and taken out
    net = max(out["stream"]["seconds"] - out["wire"]["seconds"], 1e-9)
    out["stream_net_of_standin_s"] = round(net, 3)
    out["ratio_net_stream_over_file_one"] = round(out["file_one"]["seconds"] / net, 3)
    out["ratio_cpu_stream_over_file_one"] = round(out["file_one"]["cpu_s"] /
                                                  out["stream"]["cpu_s"], 3)
    out["sdk_cpu_over_wire_s"] = round(out["sdk"]["cpu_s"] - out["wire"]["cpu_s"], 3)
    out["indexing_cpu_s"] = round(out["stream"]["cpu_s"] - out["sdk"]["cpu_s"], 3)
    return out


def report(r: dict) -> None:
    log(f"\nmodel run of {r['rows']:,} rows ({r['export_mb']} MB as a file), best of {r['runs']}")
    log(f"{'path':<34}{'s':>8}{'rows/s':>10}{'CPU s':>8}{'peak RSS MB':>13}"
        f"{'stand-in CPU s':>16}")
    names = {"file_one": "file, one process", "file_default":
             f"file, default ({r['file_default'].get('readers')} readers)",
             "stream": "SDK stream -> index", "sdk": "SDK stream alone (no index)",
             "wire": "stand-in alone (plain HTTP)"}
    for key, label in names.items():
        m = r[key]
        log(f"{label:<34}{m['seconds']:>8.2f}{m['rows_per_s']:>10,}{m['cpu_s']:>8.2f}"
            f"{m['peak_rss_mb']:>13.0f}{m['standin_cpu_s']:>16.2f}")
    ok = r["ratio_net_stream_over_file_one"] >= TARGET
    log(f"stream / file (one process): {r['ratio_stream_over_file_one']:.2f}x as measured, "
        f"{r['ratio_net_stream_over_file_one']:.2f}x without the stand-in's own "
        f"{r['wire']['seconds']:.2f} s (target >= {TARGET}: {verdict(ok)}); "
        f"stream / file (default): {r['ratio_stream_over_file_default']:.2f}x")
    log(f"CPU of the building process: stream / file (one process) "
        f"{r['ratio_cpu_stream_over_file_one']:.2f}x; of the stream's "
        f"{r['stream']['cpu_s']:.2f} CPU s the SDK takes {r['sdk']['cpu_s']:.2f} (of which "
        f"{r['sdk_cpu_over_wire_s']:.2f} over plain HTTP: json.loads of every row, "
        f"inspect.stack() per request, its temporary file), labelbridge's indexing "
        f"{r['indexing_cpu_s']:.2f} (the whole file path: {r['file_one']['cpu_s']:.2f}); "
        f"interpreter + SDK alone: {r['sdk_interpreter_rss_mb']:.0f} MB RSS")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--regions", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chunk-mb", type=float, default=1.0, help="export chunk size")
    ap.add_argument("--quick", action="store_true", help="3,000 rows, 2 runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.runs = 3_000, 2
    OUT.mkdir(parents=True, exist_ok=True)
    export = OUT / f"modelrun-{args.rows}x{args.regions}.ndjson"
    if synthetic.ensure_export(export, args.rows, args.regions, log=log):
        log(f"generated {export}")
    server_cpus, client_cpus = cpu_plan()
    work = OUT / "modelrun-work"
    work.mkdir(exist_ok=True)
    standin = StandIn(export, int(args.chunk_mb * 2**20), client_cpus, work)
    try:
        result = bench(export, work, standin, args.runs, server_cpus)
    finally:
        standin.stop()
    report(result)
    name = "modelrun-quick.json" if args.quick else "modelrun.json"
    (OUT / name).write_text(json.dumps(result, indent=2))
    return 0


def child_main(argv: list[str]) -> int:
    answer = CHILDREN[argv[0]](*argv[1:])
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
