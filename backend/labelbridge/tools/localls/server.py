"""Run Label Studio on 127.0.0.1 from a copy of the template data dir (or a kept data dir).

:func:`start_label_studio` boots it on a verified-free port with a hermetic environment
(:func:`~labelbridge.tools.localls.config.ls_env`) and answers a :class:`LabelStudioServer`;
``httpx`` and ``label_studio_sdk`` are imported only by :meth:`LabelStudioServer.api` and
:meth:`LabelStudioServer.client`, so installing works with the standard library alone.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelbridge.tools.localls.config import (
    BOOT_TIMEOUT, LS_EMAIL, LS_PASSWORD, LS_TOKEN, TEMPLATE_DIR, TEMPLATE_META, TIMINGS, launch,
    require_installed)
from labelbridge.tools.localls.install import ensure_template
from labelbridge.tools.localls.procs import ProcessStartError, free_port, port_in_use, stop_process
from labelbridge.tools.localls.procs import tail as _tail

if TYPE_CHECKING:  # pragma: no cover
    import httpx
    import label_studio_sdk


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


def start_label_studio(work_dir: Path, port: int | None = None, extra_env: dict | None = None,
                       keep: bool = False) -> LabelStudioServer:
    """Boot Label Studio on 127.0.0.1 with ``work_dir/ls-data`` as its data dir.

    The data dir is a fresh copy of the template and must not exist yet; with ``keep=True`` an
    existing one is booted as it is (its projects and tasks kept: what ``make demo`` reuses).
    ``work_dir/label-studio.log`` is the log. With ``port=None`` a free port is picked (and
    re-picked if LS reports a race); an explicit ``port`` must be free. Waits up to 90 s for
    ``GET /health`` == 200 on that exact port. The user and token are fixed by the template
    (``LS_EMAIL``/``LS_TOKEN``): ``LABEL_STUDIO_USER_TOKEN`` in ``extra_env`` changes nothing.
    """
    require_installed()
    ensure_template()
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    data_dir = work_dir / "ls-data"
    reused = keep and (data_dir / "label_studio.sqlite3").is_file()
    if data_dir.exists() and not reused:
        raise FileExistsError(f"{data_dir} already exists; give every server its own work_dir")
    if not reused:
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
            proc, boot, env = launch(data_dir, p, log_path, work_dir, extra_env, BOOT_TIMEOUT)
        except ProcessStartError as e:
            last_error = e
            if port is None and "moved elsewhere" in str(e):
                continue
            raise
        TIMINGS.append(("label-studio boot (kept data dir)" if reused
                        else "label-studio boot (template copy)", boot))
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


