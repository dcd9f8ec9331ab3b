"""What every command prints where: results on stdout, logs on stderr, the exit codes of --help,
at 80 columns. The commands run as a user runs them (a subprocess of the installed script)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import ROOT

LABELBRIDGE = str(Path(sys.executable).parent / "labelbridge")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("LABELBRIDGE_", "LABELBOX_", "LABEL_STUDIO_", "BASIC_AUTH_"))}
    return subprocess.run([LABELBRIDGE, *args], capture_output=True, text=True, timeout=60,
                          env={**clean, "COLUMNS": "80", **env})


@pytest.fixture
def not_found_server():
    """Answers 404 to everything, as Label Studio does past the last page."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "Not found."}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_library_chatter_stays_out_unless_debug(not_found_server, tmp_path):
    args = ("reconcile", "--ls-url", not_found_server, "--ls-token", "t", "--ls-project", "3")
    quiet = run(*args, LABELBRIDGE_DATA_DIR=str(tmp_path))
    assert quiet.returncode == 1, quiet.stderr                   # Label Studio refused
    assert "answered 404" in quiet.stderr and quiet.stdout == ""
    assert "HTTP Request" not in quiet.stderr                    # was httpx's INFO line
    debug = run(*args, LABELBRIDGE_DATA_DIR=str(tmp_path), LOG_LEVEL="DEBUG")
    assert "HTTP Request: GET" in debug.stderr and debug.stdout == ""


@pytest.mark.parametrize("args, message", [
    (("connect", "--ls-project", "3"), "connect needs Label Studio: pass --ls-url and --ls-token"),
    (("connect", "--ls-url", "http://127.0.0.1:9", "--ls-token", "t"), "pass --ls-project ID"),
    (("connect", "--all-projects", "--ls-project", "3"), "not both"),
    (("connect", "--ls-project", "0"), "--ls-project: must be a positive project id"),
    (("reconcile",), "reconcile needs Label Studio"),
    (("doctor",), "errors"),
    (("doctor", "--ls-project", "3"), "not-configured"),
])
def test_bad_usage_or_settings_exit_2(args, message):
    r = run(*args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert message in " ".join((r.stdout + r.stderr).split())


def test_the_ls_flags_and_their_environment_fallbacks_are_one_set():
    for command in ("connect", "reconcile", "doctor"):
        text = " ".join(run(command, "--help").stdout.split())
        for flag, env in (("--ls-url", "LABEL_STUDIO_URL"), ("--ls-token", "LABEL_STUDIO_API_KEY"),
                          ("--ls-project", "LABEL_STUDIO_PROJECT_ID")):
            assert flag in text and env in text, (command, flag)
    readme = (ROOT / "README.md").read_text()
    assert "`--ls-url`, `--ls-token` and `--ls-project`" in readme


def test_doctor_never_splits_a_path_at_80_columns(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "label-config-for-the-doctor.xml"
    deep.parent.mkdir(parents=True)
    deep.write_text('<View><Image name="image" value="$image"/>'
                    '<RectangleLabels name="label" toName="image"><Label value="Car"/>'
                    '</RectangleLabels></View>')
    r = run("doctor", "--label-config", str(deep))
    assert r.returncode == 2                                     # no ontology configured
    assert str(deep) in r.stdout.splitlines()[0], r.stdout       # whole, on its own line
    assert all(len(line) <= 80 for line in r.stdout.splitlines()[1:]), r.stdout
