"""What the benches share: CPU plan and pinning, a clean environment, percentiles, output."""

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
