"""Run a real Label Studio 1.23.2 (and helper processes) for the end-to-end tests.

As a script::

    python tests/e2e/lsharness.py install          # what `make ls-env` runs
    python tests/e2e/lsharness.py template --force # rebuild the pre-migrated data dir
    python tests/e2e/lsharness.py serve [--port P] # start LS on a fresh copy, Ctrl-C to stop

``install`` is idempotent: it makes sure ``.venv-ls`` (repository root) holds
``label-studio==1.23.2`` (stamp file ``.venv-ls/.installed-1.23.2``) and that the
pre-migrated template data dir ``.cache/ls-template`` exists.

As a module: :func:`start_label_studio` copies the template into a work dir and boots LS
on a verified-free port of 127.0.0.1 with a hermetic environment (see :func:`ls_env`);
:func:`start_process` / :func:`stop_process` start and stop any other helper process
(for example the labelbridge service) in its own process group.

This module only needs the standard library at import time (``httpx`` and
``label_studio_sdk`` are imported lazily by :meth:`LabelStudioServer.api` and
:meth:`LabelStudioServer.client`), so ``install`` also works with a bare ``python3``.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import httpx
    import label_studio_sdk

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.procs import (  # noqa: E402
    _URLOPEN,
    ProcessStartError,
    _spawn,
    _wait_healthy,
    free_port,  # re-exported
    port_in_use,
    start_process,
    stop_process,
)
from tests.procs import tail as _tail  # noqa: E402

# --------------------------------------------------------------------------- constants

ROOT = Path(__file__).resolve().parents[2]
LS_VERSION = "1.23.2"
LS_VENV = ROOT / ".venv-ls"
LS_BIN = LS_VENV / "bin" / "label-studio"
LS_PYTHON = LS_VENV / "bin" / "python"
LS_STAMP = LS_VENV / f".installed-{LS_VERSION}"
CACHE_DIR = ROOT / ".cache"
TEMPLATE_DIR = CACHE_DIR / "ls-template"
TEMPLATE_META = ".lsharness-template.json"  # inside TEMPLATE_DIR; not copied to work dirs

# The admin user baked into the template (created on its first boot).
LS_EMAIL = "admin@example.com"
LS_PASSWORD = "admin12345"
LS_TOKEN = "0123456789abcdef0123456789abcdef01234567"  # legacy DRF token key (max 40 chars)

BOOT_TIMEOUT = 90.0        # booting a copy of the pre-migrated template
TEMPLATE_TIMEOUT = 600.0   # first boot runs every migration (42-52 s observed on 2 cores)
INSTALL_HINT = "run `make ls-env` (or `.venv/bin/python tests/e2e/lsharness.py install`)"

# Timings of this process, for the pytest summary: (label, seconds).
TIMINGS: list[tuple[str, float]] = []



class LabelStudioNotInstalled(RuntimeError):
    pass



def _say(msg: str) -> None:
    print(f"[lsharness] {msg}", flush=True)


# --------------------------------------------------------------------------- Label Studio env

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


def _ls_cmd(port: int) -> list[str]:
    return [str(LS_BIN), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)]


def ls_installed() -> bool:
    return LS_BIN.exists() and LS_STAMP.exists()


def require_installed() -> None:
    if not ls_installed():
        raise LabelStudioNotInstalled(
            f"Label Studio {LS_VERSION} is not installed in {LS_VENV} "
            f"(missing {LS_BIN.name if not LS_BIN.exists() else LS_STAMP.name}): {INSTALL_HINT}")


# --------------------------------------------------------------------------- the server object

@dataclass
class LabelStudioServer:
    url: str
    port: int
    token: str
    email: str
    password: str
    data_dir: Path
    work_dir: Path
    log_path: Path
    process: subprocess.Popen
    env: dict[str, str]
    boot_seconds: float = 0.0
    _client: Any = field(default=None, repr=False)

    def client(self) -> "label_studio_sdk.LabelStudio":
        """The real SDK client, authenticated with the admin's legacy token (cached)."""
        if self._client is None:
            import httpx
            from label_studio_sdk import LabelStudio
            self._client = LabelStudio(
                base_url=self.url, api_key=self.token, timeout=60,
                httpx_client=httpx.Client(trust_env=False, timeout=60, follow_redirects=True))
        return self._client

    def api(self, method: str, path: str, **kw) -> "httpx.Response":
        """Raw REST call with ``Authorization: Token …``; ``path`` like ``/api/projects``."""
        import httpx
        url = path if path.startswith(("http://", "https://")) else f"{self.url}/{path.lstrip('/')}"
        headers = {"Authorization": f"Token {self.token}", **(kw.pop("headers", None) or {})}
        kw.setdefault("timeout", 30)
        kw.setdefault("trust_env", False)  # no proxies for 127.0.0.1
        return httpx.request(method, url, headers=headers, **kw)

    def log_tail(self, n: int = 200) -> str:
        return _tail(self.log_path, n)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        stop_label_studio(self)

    def __enter__(self) -> "LabelStudioServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _launch_ls(data_dir: Path, port: int, log_path: Path, cwd: Path, extra_env: dict | None,
               timeout: float) -> tuple[subprocess.Popen, float, dict]:
    env = ls_env(data_dir, port, extra_env)
    offset = log_path.stat().st_size if log_path.exists() else 0
    proc = _spawn(_ls_cmd(port), env, log_path, cwd)
    boot = _wait_healthy(proc, f"http://127.0.0.1:{port}/health", log_path, timeout, what="label-studio")
    # LS silently moves to port+1 when its port is taken (server.py _get_free_port). If that
    # happened, the 200 above came from somebody else: refuse it.
    with open(log_path, "rb") as f:
        f.seek(offset)
        fresh = f.read().decode(errors="replace")
    if "is in use" in fresh or "Trying to start at" in fresh:
        stop_process(proc, signal.SIGKILL, 5)
        raise ProcessStartError(f"port {port} was taken while Label Studio started; it moved elsewhere")
    return proc, boot, env


def start_label_studio(work_dir: Path, port: int | None = None,
                       extra_env: dict | None = None) -> LabelStudioServer:
    """Copy the template data dir into ``work_dir`` and boot Label Studio on 127.0.0.1.

    ``work_dir/ls-data`` becomes the data dir (it must not exist yet), ``work_dir/label-studio.log``
    the log. With ``port=None`` a free port is picked (and re-picked if LS reports a race); an
    explicit ``port`` must be free. Waits up to 90 s for ``GET /health`` == 200 on that exact port.
    The admin user/token are fixed by the template (``LS_EMAIL``/``LS_TOKEN``): changing
    ``LABEL_STUDIO_USER_TOKEN`` through ``extra_env`` does not change an existing user.
    """
    require_installed()
    ensure_template()
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    data_dir = work_dir / "ls-data"
    if data_dir.exists():
        raise FileExistsError(f"{data_dir} already exists; give every server its own work_dir")
    shutil.copytree(TEMPLATE_DIR, data_dir, symlinks=True,
                    ignore=shutil.ignore_patterns(TEMPLATE_META))
    log_path = work_dir / "label-studio.log"

    last_error: Exception | None = None
    for _attempt in range(3 if port is None else 1):
        p = port if port is not None else free_port()
        if port_in_use(p):
            if port is not None:
                raise ProcessStartError(f"port {p} is already in use; Label Studio would silently move")
            continue
        try:
            proc, boot, env = _launch_ls(data_dir, p, log_path, work_dir, extra_env, BOOT_TIMEOUT)
        except ProcessStartError as e:
            last_error = e
            if port is None and "moved elsewhere" in str(e):
                continue
            raise
        TIMINGS.append(("label-studio boot (template copy)", boot))
        return LabelStudioServer(
            url=f"http://127.0.0.1:{p}", port=p, token=LS_TOKEN, email=LS_EMAIL,
            password=LS_PASSWORD, data_dir=data_dir, work_dir=work_dir, log_path=log_path,
            process=proc, env=env, boot_seconds=boot)
    raise ProcessStartError(f"could not start Label Studio: {last_error}")


def stop_label_studio(server: LabelStudioServer) -> None:
    """Stop the server's process group: SIGTERM, then SIGKILL after 15 s.

    (Not SIGINT: a process started in the background by a non-interactive shell inherits
    SIGINT as ignored, and so would Label Studio.)
    """
    if server._client is not None:
        with contextlib.suppress(Exception):
            server._client._client_wrapper.httpx_client.httpx_client.close()
    stop_process(server.process, signal.SIGTERM, timeout=15)


# --------------------------------------------------------------------------- template data dir

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
        _say(f"creating the template data dir {TEMPLATE_DIR} (first boot runs all migrations; "
             f"log: {log_path}) ...")
        t0 = time.monotonic()
        try:
            proc, boot, _env = _launch_ls(build, port, log_path, CACHE_DIR, None, TEMPLATE_TIMEOUT)
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
        _say(f"template data dir ready in {total:.1f} s (first /health after {boot:.1f} s)")
        return True


def _check_template_server(port: int, log_path: Path) -> None:
    """The legacy token must work on the freshly created organization."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/current-user/whoami",
                                 headers={"Authorization": f"Token {LS_TOKEN}"})
    try:
        with _URLOPEN(req, timeout=15) as resp:
            me = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise ProcessStartError(
            f"legacy token rejected by the new template server ({e.code}: {e.read()[:300]!r});"
            f"\n--- log ---\n{_tail(log_path, 40)}") from e
    if me.get("email") != LS_EMAIL:
        raise ProcessStartError(f"template server answered whoami with {me.get('email')!r}")


# --------------------------------------------------------------------------- install

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
        _say(f"label-studio {LS_VERSION} already installed in {LS_VENV} (stamp {LS_STAMP.name})")
    else:
        if not _venv_python_works():
            if LS_VENV.exists():
                _say(f"{LS_VENV} is broken; recreating it")
                shutil.rmtree(LS_VENV)
            base = _base_python()
            _say(f"creating {LS_VENV} with {base}")
            subprocess.run([base, "-m", "venv", str(LS_VENV)], check=True, env=_pip_env())
        present = _installed_version() == LS_VERSION
        _say(f"pip install label-studio=={LS_VERSION} into {LS_VENV} "
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
        _say(f"label-studio {LS_VERSION} installed in {time.monotonic() - t0:.1f} s")
    if not ensure_template(force=force_template):
        _say(f"template data dir {TEMPLATE_DIR} present")
    _say(f"install done in {time.monotonic() - t0:.1f} s")


# --------------------------------------------------------------------------- CLI

def _serve(port: int | None) -> None:
    import tempfile

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # Also when started in the background (SIGINT inherited as ignored) or stopped by SIGTERM.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    work = Path(tempfile.mkdtemp(prefix="lsharness-"))
    server = start_label_studio(work, port=port)
    _say(f"Label Studio up at {server.url} in {server.boot_seconds:.1f} s "
         f"(user {server.email} / {server.password}, token {server.token}); log {server.log_path}")
    _say("Ctrl-C to stop")
    try:
        while server.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop_label_studio(server)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lsharness", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_inst = sub.add_parser("install", help="ensure .venv-ls and the template data dir")
    p_inst.add_argument("--force-template", action="store_true", help="rebuild .cache/ls-template")
    p_tpl = sub.add_parser("template", help="ensure (or --force rebuild) .cache/ls-template")
    p_tpl.add_argument("--force", action="store_true")
    p_srv = sub.add_parser("serve", help="run Label Studio on a fresh template copy until Ctrl-C")
    p_srv.add_argument("--port", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "install":
            install(force_template=args.force_template)
        elif args.cmd == "template":
            if not ensure_template(force=args.force):
                _say(f"template data dir {TEMPLATE_DIR} present")
        elif args.cmd == "serve":
            _serve(args.port)
    except (LabelStudioNotInstalled, ProcessStartError, subprocess.CalledProcessError, RuntimeError) as e:
        _say(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
