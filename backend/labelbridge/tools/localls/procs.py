"""Start and stop local processes in their own process group (Label Studio, the service,
the Labelbox stand-in): free ports, health polling, clean stops, nothing left behind.

Standard library only. Used by ``make demo`` and by the tests (``tests/procs.py`` re-exports it).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

_LIVE: set[subprocess.Popen] = set()

# Loopback probes must never go through an http(s)_proxy from the caller's environment.
URLOPEN = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


class ProcessStartError(RuntimeError):
    """A process exited or did not become healthy; the message holds its log tail."""


# --------------------------------------------------------------------------- ports

def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts connections on host:port or the port cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # The servers we start set SO_REUSEADDR too, so TIME_WAIT leftovers do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not port_in_use(port):
            return port
    raise RuntimeError("no free TCP port found on 127.0.0.1")


# --------------------------------------------------------------------------- processes

def tail(path: Path, n: int = 200) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(lines[-n:])


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
    """Send ``sig`` to the process group of ``proc``, wait, SIGKILL the group if needed."""
    try:
        if proc.poll() is None:
            _killpg(proc, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _killpg(proc, signal.SIGKILL)
                proc.wait(timeout=10)
            else:
                # The leader is gone; make sure no child of its group survives.
                _killpg(proc, signal.SIGKILL)
    finally:
        _LIVE.discard(proc)
    return proc.returncode


def _on_sigterm(signum, frame) -> None:
    """Kill our children, then die of SIGTERM as if no handler had been installed."""
    _cleanup_at_exit()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm_cleanup() -> None:
    # atexit does not run when this process is killed by SIGTERM (e.g. a CI timeout); without
    # this handler Label Studio would outlive it. Only when nobody else handles SIGTERM.
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def spawn(cmd: list[str], env: dict, log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    _install_sigterm_cleanup()
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(c) for c in cmd], env=env, cwd=str(cwd) if cwd else None,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop_process kills the whole group
        )
    _LIVE.add(proc)
    return proc


def wait_healthy(proc: subprocess.Popen, health_url: str, log_path: Path, timeout: float,
                  what: str, headers: dict | None = None) -> float:
    """Poll until ``health_url`` answers 200; on exit or timeout stop ``proc`` and raise."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    req = urllib.request.Request(health_url, headers=headers or {})
    while True:
        if proc.poll() is not None:
            _LIVE.discard(proc)
            raise ProcessStartError(
                f"{what} exited with code {proc.returncode} before {health_url} answered 200.\n"
                f"--- last lines of {log_path} ---\n{tail(log_path, 80)}")
        try:
            with URLOPEN(req, timeout=2) as resp:
                resp.read()
                if resp.status == 200:
                    return time.monotonic() - t0
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            stop_process(proc, signal.SIGKILL, 5)
            raise ProcessStartError(
                f"{what} did not answer 200 on {health_url} within {timeout:.0f} s.\n"
                f"--- last lines of {log_path} ---\n{tail(log_path, 80)}")
        time.sleep(0.1)


def start_process(cmd: list[str], env: dict, health_url: str, log_path: Path, timeout: float = 30,
                  cwd: Path | None = None, headers: dict | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, output appended to ``log_path``.

    Returns once ``health_url`` answers 200 (any body; ``headers`` are sent with the probe,
    e.g. a Basic-Auth header). Raises :class:`ProcessStartError` with the log tail if the
    process exits first or ``timeout`` passes (the process is killed then). ``env`` is used
    as is: pass a complete environment.
    """
    proc = spawn(cmd, env, log_path, cwd)
    wait_healthy(proc, health_url, log_path, timeout, what=Path(str(cmd[0])).name, headers=headers)
    return proc


def interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt in the main thread, also when this process was
    started in the background by a shell (which leaves SIGINT ignored), so it can stop what it
    started."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


@atexit.register
def _cleanup_at_exit() -> None:
    for proc in list(_LIVE):
        stop_process(proc, signal.SIGKILL, 5)
