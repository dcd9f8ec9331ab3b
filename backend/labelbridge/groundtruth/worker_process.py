"""The delivery worker as a child process of the server, at a lower CPU priority.

Converting annotations and importing them is CPU-heavy Python. Run as a thread of the server it
holds the GIL that the webhook acks need, and under load the acks queue behind it (Label Studio
gives up after 1 s and never resends). As ``labelbridge deliver`` in its own process at a lower
priority it cannot delay an ack, and the outbox (SQLite, shared by both) is all it needs.
The child dies with the server (Linux ``PR_SET_PDEATHSIG``) and is restarted if it dies alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
RESTART_DELAY_S = (1.0, 30.0)  # first and largest wait before restarting a dead worker


def _in_child(niceness: int) -> None:
    os.nice(niceness)
    try:  # die with the server, as a thread of it would; a no-op where prctl is missing
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class DeliveryProcess:
    def __init__(self, env: dict[str, str], niceness: int = 10,
                 command: tuple[str, ...] = (sys.executable, "-m", "labelbridge", "deliver")
                 ) -> None:
        """``env``: the server's settings as variables (``settings.as_env``), which win over
        the inherited environment: the server may have been configured in code."""
        self.env = {**os.environ, **env}
        self.niceness = niceness
        self.command = list(command)
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        # One thread starts and watches the child: PR_SET_PDEATHSIG fires when the *thread*
        # that forked it ends, so it must be one that lives as long as the server.
        self._thread = threading.Thread(target=self._supervise, name="delivery-process",
                                        daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        delay = RESTART_DELAY_S[0]
        while not self._stop.is_set():
            started = time.monotonic()
            with self._lock:
                if self._stop.is_set():
                    return
                self._proc = subprocess.Popen(self.command, env=self.env,
                                              preexec_fn=lambda: _in_child(self.niceness))
            log.info("delivery worker started (pid %d, nice +%d)", self._proc.pid, self.niceness)
            code = self._proc.wait()
            if self._stop.is_set():
                return
            if time.monotonic() - started > 60:
                delay = RESTART_DELAY_S[0]
            log.error("delivery worker exited with status %s; restarting in %.0f s", code, delay)
            self.restarts += 1
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, RESTART_DELAY_S[1])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the worker finishes its current step), then SIGKILL after ``timeout``."""
        with self._lock:
            self._stop.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict:
        alive = self._proc is not None and self._proc.poll() is None
        return {"mode": "process", "pid": self.pid, "alive": alive, "restarts": self.restarts}
