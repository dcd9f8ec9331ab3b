"""A local Label Studio 1.23.2 for ``make demo`` and the end-to-end tests: one implementation.

``python -m labelbridge.tools.localls install`` (what ``make ls-env`` runs) puts Label Studio
into ``.venv-ls`` and builds the pre-migrated template data dir ``.cache/ls-template``;
``... serve [--port P]`` runs one on a fresh copy until Ctrl-C. As a library:
:func:`start_label_studio` / :func:`stop_label_studio`, and :mod:`.procs` to start and stop any
other local process in its own process group.

Modules: ``config`` (paths, version, the template's user, booting one process), ``install``
(virtualenv and template), ``server`` (a running server), ``procs`` (processes and ports).
Standard library only (``httpx``/``label_studio_sdk`` are imported on first use).
"""

from labelbridge.tools.localls.config import (
    BOOT_TIMEOUT, CACHE_DIR, INSTALL_HINT, LS_BIN, LS_EMAIL, LS_PASSWORD, LS_PYTHON, LS_STAMP,
    LS_TOKEN, LS_VENV, LS_VERSION, ROOT, TEMPLATE_DIR, TEMPLATE_META, TIMINGS,
    LabelStudioNotInstalled, ls_env, ls_installed, require_installed)
from labelbridge.tools.localls.install import ensure_template, install, template_ok
from labelbridge.tools.localls.procs import (
    ProcessStartError, free_port, port_in_use, start_process, stop_process)
from labelbridge.tools.localls.server import (
    LabelStudioServer, start_label_studio, stop_label_studio)

__all__ = [
    "BOOT_TIMEOUT", "CACHE_DIR", "INSTALL_HINT", "LS_BIN", "LS_EMAIL", "LS_PASSWORD", "LS_PYTHON",
    "LS_STAMP", "LS_TOKEN", "LS_VENV", "LS_VERSION", "ROOT", "TEMPLATE_DIR", "TEMPLATE_META",
    "TIMINGS", "LabelStudioNotInstalled", "LabelStudioServer", "ProcessStartError",
    "ensure_template", "free_port", "install", "ls_env", "ls_installed", "port_in_use",
    "require_installed", "start_label_studio", "start_process", "stop_label_studio",
    "stop_process", "template_ok"]
