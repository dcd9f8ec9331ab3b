"""The official label-studio-ml 1.0.9 server with ``labelbridge.mlbackend.LabelboxModel``.

As a script::

    python tests/lsml/harness.py install    # what `make lsml-env` runs

``install`` is idempotent: ``.venv-lsml`` (repository root) gets ``label-studio-ml==1.0.9``,
``rq==1.10.1`` (the version 1.0.9's own template requires; it imports rq and redis without
declaring them) and labelbridge's runtime dependencies, resolved by pip in one run, so 1.0.9's
pins (Flask 1.1.2, Werkzeug 2.0.2, Jinja2 3.0.3, itsdangerous 2.0.1) and labelbridge's ranges
are checked together; then labelbridge itself, editable with ``--no-deps``. The stamp file
``.venv-lsml/.installed-<hash>`` names the pins and pyproject's dependencies: a change to
either installs again.

As a module: :func:`start_lsml` lays out a backend directory the way the README says
(``label-studio-ml init`` with a one-line ``model.py``) and starts it with
``label-studio-ml start`` on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.e2e.lsharness import _base_python, _pip_env  # noqa: E402
from tests.procs import start_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-lsml"
PYTHON = VENV / "bin" / "python"
CLI = VENV / "bin" / "label-studio-ml"
PINS = ("label-studio-ml==1.0.9", "rq==1.10.1")
MODEL_PY = "from labelbridge.mlbackend import LabelboxModel  # noqa: F401\n"
INSTALL_HINT = "run `make lsml-env` (or `.venv/bin/python tests/lsml/harness.py install`)"


def _dependencies() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def stamp() -> Path:
    key = hashlib.sha1("\n".join([*PINS, *_dependencies()]).encode()).hexdigest()[:12]
    return VENV / f".installed-{key}"


def installed() -> bool:
    return CLI.exists() and stamp().exists()


def _say(msg: str) -> None:
    print(f"[lsml-env] {msg}", flush=True)


def install() -> None:
    t0 = time.monotonic()
    if installed():
        _say(f"label-studio-ml already installed in {VENV} ({stamp().name})")
        return
    env = _pip_env()
    if not PYTHON.exists():
        subprocess.run([_base_python(), "-m", "venv", str(VENV)], check=True, env=env)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check",
           "--progress-bar", "off", "-q"]
    _say(f"pip install {' '.join(PINS)} + labelbridge's dependencies into {VENV} ...")
    subprocess.run([*pip, *PINS, *_dependencies()], check=True, env=env)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True, env=env)
    check = "import label_studio_ml.api, labelbridge.mlbackend"
    subprocess.run([str(PYTHON), "-c", check], check=True, env=env)
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp().write_text("\n".join([*PINS, *_dependencies()]) + "\n")
    _say(f"installed in {time.monotonic() - t0:.1f} s")


def start_lsml(work: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    """``label-studio-ml init`` + ``start`` with LabelboxModel; ``env``: the settings."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "model.py").write_text(MODEL_PY)
    backend = work / "backend"
    full = {**_pip_env(), **env, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(CLI), "init", str(backend), "--script", f"{work / 'model.py'}:LabelboxModel"],
                   check=True, env=full, cwd=work, capture_output=True)
    # `start` runs `python _wsgi.py ...` through the shell: PATH picks .venv-lsml's python.
    return start_process([str(CLI), "start", str(backend), "--host", "127.0.0.1", "-p", str(port),
                          "--log-level", "INFO"], full, f"http://127.0.0.1:{port}/health",
                         work / "lsml.log", timeout=60, cwd=work)


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: harness.py install")
    install()
