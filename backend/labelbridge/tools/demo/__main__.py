"""``make demo``: ``python -m labelbridge.tools.demo [--ls-port 8080] [--port 9090] ...``.

Exit codes: 0 stopped by Ctrl-C (or SIGTERM); 1 something it started failed; 2 bad usage or
settings (a port in use, Label Studio not installed, a wrong manifest).
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from labelbridge.labelstudio.api import LabelStudioApi, LabelStudioUnavailable
from labelbridge.tools import localls
from labelbridge.tools.demo.manifest import DemoError, load
from labelbridge.tools.demo.media import MediaServer
from labelbridge.tools.demo.projects import ProjectState, set_up
from labelbridge.tools.localls.procs import (ProcessStartError, interrupt_on_signals, port_in_use,
                                             start_process, stop_process)

DEMO_DIR = localls.ROOT / "configs" / "demo"
EXPORT = DEMO_DIR / "labelbox-export.ndjson"
# Settings of the user's shell that would change what the demo does (a Labelbox key would send
# the demo's annotations to Labelbox): the bridge gets only the demo's own.
FOREIGN = ("LABELBRIDGE_", "LABELBOX_", "LABEL_STUDIO_", "BASIC_AUTH_")
READY = "Ctrl-C stops everything the demo started."


class Usage(Exception):
    """Bad usage or settings: exit 2."""


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="make demo", description="A local Label Studio with one "
                                 "project per demo config, connected to labelbridge on the demo "
                                 "export. Ctrl-C stops everything it started.")
    ap.add_argument("--ls-port", type=int, default=8080, help="Label Studio (default 8080)")
    ap.add_argument("--port", type=int, default=9090, help="labelbridge (default 9090)")
    ap.add_argument("--media-port", type=int, default=8081, help="demo media (default 8081)")
    ap.add_argument("--data-dir", type=Path, default=Path("var"),
                    help="labelbridge's data dir; the demo keeps Label Studio in DATA_DIR/demo")
    ap.add_argument("--manifest", type=Path, default=DEMO_DIR / "demo.yaml")
    return ap.parse_args(argv)


def _token(state: Path) -> str:
    """The webhook secret, made once and kept with the demo's data (connect stays idempotent)."""
    path = state / "webhook-token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _bridge_env(args: argparse.Namespace, ls: localls.LabelStudioServer, token: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    env.update({"LABELBRIDGE_EXPORT": str(EXPORT), "LABELBRIDGE_DATA_DIR": str(args.data_dir),
                "LABELBRIDGE_HOST": "127.0.0.1", "LABELBRIDGE_PORT": str(args.port),
                "LABELBRIDGE_WEBHOOK_TOKEN": token, "LABEL_STUDIO_URL": ls.url,
                "LABEL_STUDIO_API_KEY": ls.token})
    return env


def _connector(env: dict, backend_url: str, log: Path):
    def connect(project_id: int) -> None:
        cmd = [sys.executable, "-m", "labelbridge", "connect", "--ls-project", str(project_id),
               "--backend-url", backend_url]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"$ labelbridge connect --ls-project {project_id}\n{r.stdout}{r.stderr}\n")
        if r.returncode != 0:
            raise RuntimeError(f"`labelbridge connect --ls-project {project_id}` exited "
                               f"{r.returncode}:\n{r.stderr.strip()}")
    return connect


def _print_ready(ls: localls.LabelStudioServer, bridge_url: str, media: MediaServer,
                 states: list[ProjectState], args: argparse.Namespace, state_dir: Path) -> None:
    """What is up and what to try; at most 80 columns, paths alone on their lines."""
    outbox = _rel(args.data_dir / "outbox")
    lines = ["", "labelbridge demo is up.", "",
             f"  Label Studio  {ls.url}", f"                log in as {ls.email} / {ls.password}",
             f"  labelbridge   {bridge_url}  ML backend and webhook, predictions",
             f"                from {_rel(EXPORT)}",
             f"  demo media    {media.url}  from", f"                {_rel(DEMO_DIR / 'media')}",
             "", "Projects (each wired with `labelbridge connect`, predictions retrieved):"]
    for st in states:
        made = "created" if st.created else "reused"
        lines.append(f"  {st.title}: {len(st.tasks)} task(s), {len(st.predicted)} with "
                     f"predictions ({made}, {st.imported} imported now)")
        if st.predicted:
            lines.append(f"    open {ls.url}/projects/{st.id}/data?task={st.predicted[0]}")
        lines += [f"    note: {n}" for n in st.notes]
    lines += ["", "What to try:",
              "  1. Open the first URL and log in. The regions are Labelbox predictions;",
              "     select one: its ID under Info is the Labelbox feature id.",
              "  2. Accept the prediction (or move a box) and press Submit.",
              "  3. The annotation arrives as Labelbox NDJSON (each uuid = uuid5 of a region",
              "     id) in", f"       {outbox}",
              "     `labelbridge outbox status` shows the queue.",
              "  4. Delete the annotation: removals.ndjson there gets a line.",
              "", "Logs:", f"  {_rel(ls.log_path)}", f"  {_rel(state_dir / 'labelbridge.log')}",
              "", READY, ""]
    print("\n".join(lines), flush=True)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run(args: argparse.Namespace) -> int:
    projects = load(args.manifest)
    for name, port in (("--ls-port", args.ls_port), ("--port", args.port),
                       ("--media-port", args.media_port)):
        if port_in_use(port):
            raise Usage(f"port {port} is in use (a demo still running?): stop it or pass "
                        f"{name} with a free port")
    localls.require_installed()
    state_dir = (args.data_dir / "demo").resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    started: list = []
    try:
        media = MediaServer(DEMO_DIR / "media", args.media_port)
        started.append(media)
        print(f"starting Label Studio on port {args.ls_port} ...", flush=True)
        ls = localls.start_label_studio(state_dir / "label-studio", port=args.ls_port, keep=True)
        started.append(ls)
        env = _bridge_env(args, ls, _token(state_dir))
        bridge_url = f"http://127.0.0.1:{args.port}"
        print(f"starting labelbridge on port {args.port} ...", flush=True)
        bridge = start_process([sys.executable, "-m", "labelbridge", "serve"], env,
                               f"{bridge_url}/health", state_dir / "labelbridge.log", timeout=120)
        started.append(bridge)
        api = LabelStudioApi(ls.url, ls.token)
        connect = _connector(env, bridge_url, state_dir / "connect.log")
        states = [set_up(api, p, DEMO_DIR / "media", media.url, connect) for p in projects]
        _print_ready(ls, bridge_url, media, states, args, state_dir)
        while ls.alive() and bridge.poll() is None:
            time.sleep(0.5)
        dead = "Label Studio" if not ls.alive() else "labelbridge"
        print(f"error: {dead} stopped; see its log in {state_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        for thing in reversed(started):
            if isinstance(thing, MediaServer):
                thing.stop()
            elif isinstance(thing, localls.LabelStudioServer):
                thing.stop()
            else:
                stop_process(thing)


def main(argv: list[str] | None = None) -> int:
    interrupt_on_signals()
    try:
        return run(_args(argv))
    except (Usage, DemoError, localls.LabelStudioNotInstalled) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ProcessStartError, LabelStudioUnavailable, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
