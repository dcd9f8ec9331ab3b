"""What the benches share: CPU plan and pinning, a clean environment, percentiles, output, and
what a process tree uses (CPU, memory, open files)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PIN = ("import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')}); "
        "os.execvp(sys.argv[2], sys.argv[2:])")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_plan() -> tuple[list[int], list[int]]:
    """(server CPUs, client CPUs): the load generator keeps the first CPU, servers the rest."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return cpus, cpus
    return cpus[1:], cpus[:1]


def pinned(cmd: list[str], cpus: list[int]) -> list[str]:
    """``cmd`` run on ``cpus`` only (it and every process it starts)."""
    return [sys.executable, "-c", _PIN, ",".join(map(str, cpus)), *cmd]


def percentile(sorted_values, p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any labelbridge/Labelbox/Label Studio setting of the caller."""
    drop = ("LABELBRIDGE_", "LABELBOX_", "LABEL_STUDIO_", "BASIC_AUTH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k != "LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants (gone ones are left out)."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    stack += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):   # gone meanwhile
            continue
        out.append(p)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds the live threads of a process tree have run, to the nanosecond (the
    scheduler's ``schedstat``, not 10 ms clock ticks: idle processes use a few ms a second)."""
    total_ns = 0
    for p in tree_pids(pid):
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/schedstat") as fh:
                    total_ns += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):   # gone meanwhile
            pass
    return total_ns / 1e9


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (worker processes included)."""
    total_kb = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                total_kb += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
        except (OSError, StopIteration, ValueError):  # gone meanwhile, or a zombie
            pass
    return total_kb / 1024


def tree_open_files(pid: int) -> int:
    """File descriptors a process and its descendants hold."""
    total = 0
    for p in tree_pids(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return total
