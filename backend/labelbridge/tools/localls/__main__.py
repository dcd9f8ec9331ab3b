"""``python -m labelbridge.tools.localls install | template [--force] | serve [--port P]``."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labelbridge.tools.localls import __doc__ as PACKAGE_DOC
from labelbridge.tools.localls.config import TEMPLATE_DIR, LabelStudioNotInstalled, say
from labelbridge.tools.localls.install import ensure_template, install
from labelbridge.tools.localls.procs import ProcessStartError, interrupt_on_signals
from labelbridge.tools.localls.server import start_label_studio, stop_label_studio


def _serve(port: int | None) -> None:
    interrupt_on_signals()
    work = Path(tempfile.mkdtemp(prefix="lsharness-"))
    server = start_label_studio(work, port=port)
    say(f"Label Studio up at {server.url} in {server.boot_seconds:.1f} s "
        f"(user {server.email} / {server.password}, token {server.token}); log {server.log_path}")
    say("Ctrl-C to stop")
    try:
        while server.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop_label_studio(server)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labelbridge.tools.localls",
                                 description=(PACKAGE_DOC or "").split("\n\n")[0])
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
                say(f"template data dir {TEMPLATE_DIR} present")
        elif args.cmd == "serve":
            _serve(args.port)
    except (LabelStudioNotInstalled, ProcessStartError, subprocess.CalledProcessError, RuntimeError) as e:
        say(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
