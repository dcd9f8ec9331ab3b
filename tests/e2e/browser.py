"""Debian's chromium, headless, driven over the DevTools protocol (CDP) for the browser checks.

    python tests/e2e/browser.py install    # what `make browser-env` runs: apt-get, once

Why an own client of ~150 lines instead of playwright-core: the checks need five CDP methods
(navigate, evaluate, screenshot, a click, a key), the ``websockets`` package is already here
(uvicorn[standard] brings it), and playwright-core would add Node packages to install and a
client that expects its own browser build's protocol rather than Debian's chromium.

:class:`Chromium` starts one browser with a fresh ``--user-data-dir`` and DevTools on a port
it picks itself (read from ``DevToolsActivePort``, so no port race); :meth:`Chromium.page`
opens a :class:`Page` on its tab.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from labelbridge.tools.localls.procs import URLOPEN, spawn, stop_process, tail  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WINDOW = (1600, 1000)


class BrowserError(RuntimeError):
    pass


def install() -> None:
    """``apt-get install chromium`` when it is missing (the test set-up; needs root)."""
    if CHROMIUM.exists():
        print(f"[browser] {CHROMIUM} present", flush=True)
        return
    if os.geteuid() != 0:
        raise BrowserError(f"{CHROMIUM} is missing: run `sudo apt-get install -y chromium`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("[browser] apt-get install chromium (once) ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium",
                    "fonts-dejavu-core"], check=True, env=env)
    if not CHROMIUM.exists():
        raise BrowserError(f"apt-get installed chromium, but {CHROMIUM} does not exist")


class Page:
    """One tab over its DevTools websocket: commands in order, events ignored."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import ClientConnection, connect
        self.ws: ClientConnection = connect(ws_url, max_size=None, open_timeout=10).__enter__()
        self._ids = itertools.count(1)

    def send(self, method: str, timeout: float = 30, **params: Any) -> dict:
        n = next(self._ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == n:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON."""
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression[:80]}...: {r['exceptionDetails'].get('text')} "
                               f"{r['exceptionDetails'].get('exception', {}).get('description')}")
        return r["result"].get("value")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 30, what: str = "",
                 settle: float = 0.0) -> Any:
        """Poll until the expression is truthy (and, with ``settle``, has kept the same value
        that many seconds: the editor renders in steps); its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        since = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError as exc:   # the page is navigating
                value = exc
            if value and not isinstance(value, BrowserError):
                since = since if value == last and since is not None else time.monotonic()
                if time.monotonic() - since >= settle:
                    return value
            else:
                since = None
            last = value
            time.sleep(0.25)
        raise BrowserError(f"timed out after {timeout:.0f} s waiting for {what or expression} "
                           f"(last: {last!r})")

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      clickCount=1)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.ws.close()


class Chromium:
    """A headless chromium of its own (``with Chromium(tmp) as browser: ...``)."""

    def __init__(self, work_dir: Path) -> None:
        if not CHROMIUM.exists():
            raise BrowserError(f"{CHROMIUM} is missing: run `make browser-env`")
        self.profile = Path(work_dir) / "chromium-profile"
        shutil.rmtree(self.profile, ignore_errors=True)
        self.profile.mkdir(parents=True)
        self.log = Path(work_dir) / "chromium.log"
        cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={self.profile}",
               "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
               f"--window-size={WINDOW[0]},{WINDOW[1]}", "about:blank"]
        self.proc = spawn(cmd, {**os.environ}, self.log)
        self.port = self._devtools_port()

    def _devtools_port(self, timeout: float = 30) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited {self.proc.returncode}:\n{tail(self.log, 30)}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        self.close()
        raise BrowserError(f"chromium opened no DevTools port in {timeout:.0f} s:\n"
                           f"{tail(self.log, 30)}")

    def page(self) -> Page:
        with URLOPEN(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as resp:
            targets = json.loads(resp.read())
        tab = next(t for t in targets if t.get("type") == "page")
        page = Page(tab["webSocketDebuggerUrl"])
        page.send("Page.enable")
        page.send("Runtime.enable")
        return page

    def close(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def login(page: Page, ls_url: str, email: str, password: str) -> None:
    """Log in through Label Studio's own form, as a person does."""
    page.navigate(f"{ls_url}/user/login/")
    page.wait_for("!!document.querySelector('input[name=email]')", what="the login form")
    page.evaluate(f"""(() => {{
        document.querySelector('input[name=email]').value = {json.dumps(email)};
        document.querySelector('input[name=password]').value = {json.dumps(password)};
        document.querySelector('form').submit(); return true; }})()""")
    page.wait_for("!location.pathname.startsWith('/user/login') && "
                  "document.readyState === 'complete'", what="the page after logging in")


def main(argv: list[str]) -> int:
    if argv[:1] != ["install"]:
        print("usage: python tests/e2e/browser.py install", file=sys.stderr)
        return 2
    try:
        install()
    except (BrowserError, subprocess.CalledProcessError) as exc:
        print(f"[browser] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
