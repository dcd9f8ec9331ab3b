"""Start and stop helper processes in tests (the service, the Labelbox stand-in, ...)."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

_live: set[subprocess.Popen] = set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_process(cmd: list[str], env: dict, health_url: str, log_path: Path, timeout: float = 60,
                  auth: tuple[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group; return once ``health_url`` answers 200."""
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    _live.add(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            if httpx.get(health_url, timeout=1, auth=auth).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError(f"{cmd} not healthy after {timeout}s:\n{tail(log_path)}")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    _live.discard(proc)


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@atexit.register
def _cleanup() -> None:
    for proc in list(_live):
        stop_process(proc, signal.SIGKILL, 5)
