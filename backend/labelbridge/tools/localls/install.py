"""Install Label Studio into its own virtualenv and build the pre-migrated template data dir.

``install()`` is idempotent: it makes sure ``.venv-ls`` (repository root) holds
``label-studio==1.23.2`` (stamp file ``.venv-ls/.installed-1.23.2``) and that the template
``.cache/ls-template`` exists (a data dir whose first boot ran every migration and created the
user of :mod:`config`); every server then boots from a copy of it in a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from labelbridge.tools.localls.config import (
    CACHE_DIR, LS_BIN, LS_EMAIL, LS_PYTHON, LS_STAMP, LS_TOKEN, LS_VENV, LS_VERSION, TEMPLATE_DIR,
    TEMPLATE_META, TEMPLATE_TIMEOUT, TIMINGS, launch, require_installed, say)
from labelbridge.tools.localls.procs import URLOPEN, ProcessStartError, free_port, stop_process, tail


def _template_meta() -> dict:
    return {"label_studio": LS_VERSION, "email": LS_EMAIL, "token": LS_TOKEN,
            "legacy_api_tokens": True, "format": 1}


def template_ok() -> bool:
    try:
        meta = json.loads((TEMPLATE_DIR / TEMPLATE_META).read_text())
    except (OSError, ValueError):
        return False
    return meta == _template_meta() and (TEMPLATE_DIR / "label_studio.sqlite3").is_file()


@contextlib.contextmanager
def _file_lock(path: Path):
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_template(force: bool = False) -> bool:
    """Create ``.cache/ls-template`` (a migrated data dir with the admin user) if missing.

    Returns True if it was (re)built. Safe against concurrent callers (file lock) and
    interrupted builds (built under a temporary name, then renamed).
    """
    if not force and template_ok():
        return False
    require_installed()
    with _file_lock(CACHE_DIR / "ls-template.lock"):
        if not force and template_ok():
            return False
        build = CACHE_DIR / f"ls-template.build-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        log_path = CACHE_DIR / "ls-template-build.log"
        log_path.unlink(missing_ok=True)
        port = free_port()
        say(f"creating the template data dir {TEMPLATE_DIR} (first boot runs all migrations; "
            f"log: {log_path}) ...")
        t0 = time.monotonic()
        try:
            proc, boot, _env = launch(build, port, log_path, CACHE_DIR, None, TEMPLATE_TIMEOUT)
            try:
                _check_template_server(port, log_path)
            finally:
                rc = stop_process(proc, signal.SIGTERM, timeout=30)
            if rc not in (0, -signal.SIGTERM):
                raise ProcessStartError(f"template server did not stop on SIGTERM (exit {rc})")
            for leftover in ("label_studio.sqlite3-journal", "label_studio.sqlite3-wal",
                             "label_studio.sqlite3-shm"):
                if (build / leftover).exists():
                    raise ProcessStartError(f"template not shut down cleanly: {leftover} left behind")
            (build / TEMPLATE_META).write_text(json.dumps(_template_meta(), indent=1) + "\n")
            shutil.rmtree(TEMPLATE_DIR, ignore_errors=True)
            os.replace(build, TEMPLATE_DIR)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        total = time.monotonic() - t0
        TIMINGS.append(("label-studio template creation", total))
        say(f"template data dir ready in {total:.1f} s (first /health after {boot:.1f} s)")
        return True


def _check_template_server(port: int, log_path: Path) -> None:
    """The legacy token must work on the freshly created organization."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/current-user/whoami",
                                 headers={"Authorization": f"Token {LS_TOKEN}"})
    try:
        with URLOPEN(req, timeout=15) as resp:
            me = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise ProcessStartError(
            f"legacy token rejected by the new template server ({e.code}: {e.read()[:300]!r});"
            f"\n--- log ---\n{tail(log_path, 40)}") from e
    if me.get("email") != LS_EMAIL:
        raise ProcessStartError(f"template server answered whoami with {me.get('email')!r}")


def _base_python() -> str:
    """A base interpreter (not the project's venv python) to create .venv-ls with.

    Candidates: ``sys._base_executable`` (the interpreter the running venv was made from),
    then ``python3`` on PATH, then /usr/bin/python3; the first one that is not itself inside
    a virtualenv wins.
    """
    candidates = [getattr(sys, "_base_executable", None), shutil.which("python3"), "/usr/bin/python3"]
    check = "import sys; sys.exit(0 if sys.prefix == sys.base_prefix else 3)"
    for cand in candidates:
        if not cand or not Path(cand).exists():
            continue
        if subprocess.run([cand, "-c", check], capture_output=True, env=_pip_env()).returncode == 0:
            return cand
    raise RuntimeError(f"no base python3 (outside a virtualenv) found among {candidates}")


def _pip_env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PIP_REQUIRE_VIRTUALENV", "PIP_TARGET",
              "PIP_PREFIX", "PIP_USER"):
        env.pop(k, None)
    return env


def _venv_python_works() -> bool:
    if not LS_PYTHON.exists():
        return False
    r = subprocess.run([str(LS_PYTHON), "-c", "import sys"], capture_output=True)
    return r.returncode == 0


def _installed_version() -> str | None:
    # Never run `label-studio --version`: it starts a server on 0.0.0.0:8080.
    r = subprocess.run(
        [str(LS_PYTHON), "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
        capture_output=True, text=True, env=_pip_env())
    return r.stdout.strip() if r.returncode == 0 else None


def install(force_template: bool = False) -> None:
    t0 = time.monotonic()
    if LS_BIN.exists() and LS_STAMP.exists():
        say(f"label-studio {LS_VERSION} already installed in {LS_VENV} (stamp {LS_STAMP.name})")
    else:
        if not _venv_python_works():
            if LS_VENV.exists():
                say(f"{LS_VENV} is broken; recreating it")
                shutil.rmtree(LS_VENV)
            base = _base_python()
            say(f"creating {LS_VENV} with {base}")
            subprocess.run([base, "-m", "venv", str(LS_VENV)], check=True, env=_pip_env())
        present = _installed_version() == LS_VERSION
        say(f"pip install label-studio=={LS_VERSION} into {LS_VENV} "
            + ("(already present: checking its dependencies)" if present
                else "(about 1 minute, ~1 GB) ..."))
        subprocess.run([str(LS_PYTHON), "-m", "pip", "install", "--disable-pip-version-check",
                        "--progress-bar", "off", *(["-q"] if present else []),
                        f"label-studio=={LS_VERSION}"],
                       check=True, env=_pip_env())
        version = _installed_version()
        if version != LS_VERSION:
            raise RuntimeError(f"{LS_VENV} holds label-studio {version!r}, expected {LS_VERSION}")
        if not LS_BIN.exists():
            raise RuntimeError(f"{LS_BIN} missing after pip install")
        for old in LS_VENV.glob(".installed-*"):
            old.unlink()
        LS_STAMP.write_text(f"label-studio=={LS_VERSION}\n")
        say(f"label-studio {LS_VERSION} installed in {time.monotonic() - t0:.1f} s")
    if not ensure_template(force=force_template):
        say(f"template data dir {TEMPLATE_DIR} present")
    say(f"install done in {time.monotonic() - t0:.1f} s")


