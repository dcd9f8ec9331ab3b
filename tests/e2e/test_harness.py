"""Self-test of the e2e harness against a real Label Studio 1.23.2 (no mocks)."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e import lsharness

RECT_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Car"/><Label value="Person"/>
  </RectangleLabels>
</View>"""


def _rect(region_id: str, label: str, x: float) -> dict:
    return {"id": region_id, "from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "original_width": 640, "original_height": 480, "image_rotation": 0,
            "value": {"x": x, "y": 20.0, "width": 30.5, "height": 40.25, "rotation": 0,
                      "rectanglelabels": [label]}}


def _import(ls, project_id: int, n: int) -> list[int]:
    resp = ls.projects.import_tasks(
        id=project_id, request=[{"data": {"image": f"http://127.0.0.1:9/img{i}.jpg"}} for i in range(n)],
        return_task_ids=True)
    assert resp.task_count == n
    return list(resp.task_ids)


# --------------------------------------------------------------------------- server and auth

def test_server_is_healthy_and_legacy_token_works(label_studio):
    assert label_studio.alive()
    health = label_studio.api("GET", "/health")
    assert health.status_code == 200 and health.json() == {"status": "UP"}

    me = label_studio.api("GET", "/api/current-user/whoami")
    assert me.status_code == 200, me.text
    assert me.json()["email"] == label_studio.email

    ls = label_studio.client()
    assert isinstance(list(ls.projects.list()), list)  # real SDK client, Token auth

    bad = label_studio.api("GET", "/api/projects", headers={"Authorization": "Token not-the-token"})
    assert bad.status_code == 401


# --------------------------------------------------------------------------- tasks and annotations

def test_import_list_annotate_roundtrip(label_studio, ls_project):
    ls = label_studio.client()
    project = ls_project(RECT_CONFIG, title="harness roundtrip")
    task_ids = _import(ls, project.id, 3)
    assert len(task_ids) == 3

    listed = list(ls.tasks.list(project=project.id))
    assert sorted(t.id for t in listed) == sorted(task_ids)
    assert {t.data["image"] for t in listed} == {f"http://127.0.0.1:9/img{i}.jpg" for i in range(3)}

    result = [_rect("harnessBox01", "Car", 10.0), _rect("harnessBox02", "Person", 55.125)]
    created = ls.annotations.create(id=task_ids[0], result=result, lead_time=1.5, was_cancelled=False)
    assert created.id

    back = ls.annotations.get(id=created.id)
    assert back.result == result  # stored verbatim, region ids preserved
    assert [a.id for a in ls.annotations.list(id=task_ids[0])] == [created.id]

    raw = label_studio.api("GET", f"/api/annotations/{created.id}/")
    assert raw.status_code == 200 and raw.json()["result"] == result


# --------------------------------------------------------------------------- webhooks

class _Receiver:
    """A tiny webhook receiver on 127.0.0.1 recording (path, headers, json body)."""

    def __init__(self):
        self.received: list[tuple[str, dict, dict]] = []
        self.event = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append((self.path, dict(self.headers), json.loads(body or b"{}")))
                outer.event.set()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, action: str, timeout: float = 10) -> tuple[str, dict, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.received:
                if item[2].get("action") == action:
                    return item
            self.event.wait(0.1)
            self.event.clear()
        raise AssertionError(f"no {action} webhook; got {[r[2].get('action') for r in self.received]}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = _Receiver()
    yield r
    r.close()


def test_webhook_to_loopback_with_custom_header(label_studio, ls_project, receiver):
    ls = label_studio.client()
    project = ls_project(RECT_CONFIG, title="harness webhook")
    hook = ls.webhooks.create(project=project.id, url=f"{receiver.url}/lshook",
                              headers={"X-Harness-Secret": "s3cret"}, send_payload=True,
                              send_for_all_actions=False, actions=["ANNOTATION_CREATED"], is_active=True)
    assert hook.id  # a 403 here would mean the SSRF settings are wrong
    (task_id,) = _import(ls, project.id, 1)
    result = [_rect("hookBox01", "Car", 12.5)]
    created = ls.annotations.create(id=task_id, result=result)

    path, headers, body = receiver.wait_for("ANNOTATION_CREATED")
    assert path == "/lshook"
    assert {k.lower(): v for k, v in headers.items()}["x-harness-secret"] == "s3cret"
    assert body["annotation"]["id"] == created.id
    assert body["annotation"]["result"] == result
    assert body["task"]["id"] == task_id and body["project"]["id"] == project.id


# --------------------------------------------------------------------------- the harness itself

def test_boot_time_and_clean_stop(tmp_path):
    """A second server from the template: boot time, exact port, nothing left behind."""
    t0 = time.monotonic()
    server = lsharness.start_label_studio(tmp_path / "second")
    total = time.monotonic() - t0
    print(f"\nLabel Studio boot from the template: {server.boot_seconds:.2f} s "
          f"(start_label_studio total {total:.2f} s)")
    try:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.api("GET", "/api/current-user/whoami").json()["email"] == server.email
        assert server.data_dir.is_dir() and not (server.data_dir / lsharness.TEMPLATE_META).exists()
        assert "Starting development server" in server.log_tail()
        assert server.boot_seconds < 30, server.log_tail(40)
    finally:
        lsharness.stop_label_studio(server)
    assert server.process.poll() is not None
    assert not lsharness.port_in_use(server.port)


def test_busy_port_is_refused(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(lsharness.ProcessStartError, match="in use"):
            lsharness.start_label_studio(tmp_path / "busy", port=port)


def test_start_process_reports_early_exit(tmp_path):
    import sys
    with pytest.raises(lsharness.ProcessStartError, match="exited with code 3"):
        lsharness.start_process([sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
                                env={}, health_url=f"http://127.0.0.1:{lsharness.free_port()}/health",
                                log_path=tmp_path / "p.log", timeout=10)
    assert "boom" in (tmp_path / "p.log").read_text()


def test_start_and_stop_process(tmp_path):
    import sys
    port = lsharness.free_port()
    code = ("import http.server, json\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.end_headers(); self.wfile.write(b'{}')\n"
            f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n")
    proc = lsharness.start_process([sys.executable, "-c", code], env={},
                                   health_url=f"http://127.0.0.1:{port}/health",
                                   log_path=tmp_path / "srv.log", timeout=20)
    assert proc.poll() is None
    rc = lsharness.stop_process(proc, signal.SIGTERM, timeout=5)
    assert rc == -signal.SIGTERM and not lsharness.port_in_use(port)
