"""Where the local Label Studio lives, who its user is, and how one process of it is booted."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from labelbridge.tools.localls.procs import ProcessStartError, spawn, stop_process, wait_healthy


def _repository_root() -> Path:
    """The clone this package is installed from (editable install), else the working dir."""
    root = Path(__file__).resolve().parents[4]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


ROOT = _repository_root()
LS_VERSION = "1.23.2"
LS_VENV = ROOT / ".venv-ls"
LS_BIN = LS_VENV / "bin" / "label-studio"
LS_PYTHON = LS_VENV / "bin" / "python"
LS_STAMP = LS_VENV / f".installed-{LS_VERSION}"
CACHE_DIR = ROOT / ".cache"
TEMPLATE_DIR = CACHE_DIR / "ls-template"
TEMPLATE_META = ".lsharness-template.json"  # inside TEMPLATE_DIR; not copied to work dirs

# The user baked into the template (created on its first boot); every copy has it.
LS_EMAIL = "admin@example.com"
LS_PASSWORD = "admin12345"
LS_TOKEN = "0123456789abcdef0123456789abcdef01234567"  # legacy DRF token key (max 40 chars)

BOOT_TIMEOUT = 90.0        # booting a copy of the pre-migrated template
TEMPLATE_TIMEOUT = 600.0   # first boot runs every migration (42-52 s observed on 2 cores)
INSTALL_HINT = "run `make ls-env` (or `.venv/bin/python -m labelbridge.tools.localls install`)"

# Timings of this process, for the pytest summary: (label, seconds).
TIMINGS: list[tuple[str, float]] = []


class LabelStudioNotInstalled(RuntimeError):
    pass


def say(msg: str) -> None:
    print(f"[label-studio] {msg}", flush=True)


def ls_installed() -> bool:
    return LS_BIN.exists() and LS_STAMP.exists()


def require_installed() -> None:
    if not ls_installed():
        raise LabelStudioNotInstalled(
            f"Label Studio {LS_VERSION} is not installed in {LS_VENV} "
            f"(missing {LS_BIN.name if not LS_BIN.exists() else LS_STAMP.name}): {INSTALL_HINT}")


def ls_env(data_dir: Path, port: int, extra_env: dict | None = None) -> dict[str, str]:
    """The complete, hermetic environment for a Label Studio process.

    Only PATH, HOME, LANG and TMPDIR are taken from ``os.environ``. LS reads every setting
    through ``get_env(NAME)``, which tries ``LABEL_STUDIO_NAME``, ``HEARTEX_NAME`` and then plain
    ``NAME`` (HOST, PORT, USERNAME, DEBUG, LOG_LEVEL, ...), so nothing else is passed through and
    every relevant ``LABEL_STUDIO_*`` name is set explicitly. ``extra_env`` is applied last; a
    ``None`` value removes a variable.
    """
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env["PATH"] = os.pathsep.join([str(LS_VENV / "bin"), env.get("PATH", "/usr/bin:/bin")])
    env.setdefault("LANG", "C.UTF-8")
    data_dir = Path(data_dir)
    env.update({
        "PYTHONUNBUFFERED": "1",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_DATABASE_NAME": str(data_dir / "label_studio.sqlite3"),
        "LABEL_STUDIO_USERNAME": LS_EMAIL,
        "LABEL_STUDIO_PASSWORD": LS_PASSWORD,
        "LABEL_STUDIO_USER_TOKEN": LS_TOKEN,
        # Read when the organization is created (the template's first boot); kept on every boot.
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_HOST": f"http://127.0.0.1:{port}",   # settings.HOSTNAME (/setup "hostname")
        "LABEL_STUDIO_PORT": str(port),
        "LABEL_STUDIO_DEBUG": "false",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",      # else a GET to pypi.org at import
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_SENTRY_DSN": "",                     # else a hard-coded DSN
        "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
        "SENTRY_DSN": "",                                  # sentry_sdk's own variable
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",         # ML backends on 127.0.0.1
        "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",   # webhooks on 127.0.0.1, auto <ml>/webhook
        # settings/base.py reads plain LOG_LEVEL with os.environ.get for some loggers.
        "LABEL_STUDIO_LOG_LEVEL": "INFO",
        "LOG_LEVEL": "INFO",
    })
    for k, v in (extra_env or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def ls_cmd(port: int) -> list[str]:
    return [str(LS_BIN), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)]


def launch(data_dir: Path, port: int, log_path: Path, cwd: Path, extra_env: dict | None,
           timeout: float) -> tuple[subprocess.Popen, float, dict]:
    """Boot Label Studio on ``data_dir`` at 127.0.0.1:``port``; (process, boot seconds, env)."""
    env = ls_env(data_dir, port, extra_env)
    offset = log_path.stat().st_size if log_path.exists() else 0
    proc = spawn(ls_cmd(port), env, log_path, cwd)
    boot = wait_healthy(proc, f"http://127.0.0.1:{port}/health", log_path, timeout, what="label-studio")
    # LS silently moves to port+1 when its port is taken (server.py _get_free_port). If that
    # happened, the 200 above came from somebody else: refuse it.
    with open(log_path, "rb") as f:
        f.seek(offset)
        fresh = f.read().decode(errors="replace")
    if "is in use" in fresh or "Trying to start at" in fresh:
        stop_process(proc, signal.SIGKILL, 5)
        raise ProcessStartError(f"port {port} was taken while Label Studio started; it moved elsewhere")
    return proc, boot, env
