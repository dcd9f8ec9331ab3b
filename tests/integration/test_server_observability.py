"""The service as operators see it, as a real process: the delivery worker's figures reach
``/metrics`` (Labelbox errors by kind included), JSON logs carry the request and Label Studio
ids and never a secret, a read-only data dir is named at start-up, readiness and the Docker
health check say why they are degraded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import annotation_body as annotation
from tests.helpers import capture, wait_for
from tests.integration.lbservice import service, standin  # noqa: F401 (fixtures)
from tests.procs import free_port, start_process, stop_process

CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def unprivileged(*args: str) -> list[str]:
    """``python -m labelbridge ARGS`` that, run as root, no longer bypasses file permissions
    (CAP_DAC_OVERRIDE dropped), so a read-only directory is read-only to it."""
    drop = ("import ctypes, os, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "if os.geteuid() == 0:\n"
            f"    for cap in ({CAP_DAC_OVERRIDE}, {CAP_DAC_READ_SEARCH}):\n"
            f"        assert libc.prctl({PR_CAPBSET_DROP}, cap, 0, 0, 0) == 0, 'prctl'\n"
            "os.execv(sys.executable, [sys.executable, '-m', 'labelbridge', *sys.argv[1:]])\n")
    return [sys.executable, "-c", drop, *args]


def samples(url: str, **kw) -> dict[tuple, float]:
    r = httpx.get(url + "/metrics", **kw)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(r.text) for s in f.samples}


def value(url: str, name: str, **labels) -> float:
    return samples(url).get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_worker_process_figures_reach_metrics_errors_by_kind_too(service, standin):
    service.start()
    url = service.url
    wait_for(lambda: value(url, "labelbridge_delivery_worker_up") == 1)
    standin.fail_next(2, "429", operations=["createLabelImport"])
    service.post(annotation(11, 110, "img-1.jpg"))
    wait_for(lambda: value(url, "labelbridge_sink_imports_total", outcome="ok") == 1, timeout=60)
    assert value(url, "labelbridge_sink_imports_total", outcome="transient_error") == 2
    assert value(url, "labelbridge_sink_errors_total", operation="import", kind="transient",
                 error="ApiLimitError") == 2
    assert value(url, "labelbridge_sink_lines_total", status="ok") == 3
    assert value(url, "labelbridge_sink_import_duration_seconds_count") == 3
    service.post(annotation(11, 110, "img-1.jpg", x=50, action="ANNOTATION_UPDATED",
                            updated_at="2026-11-22T13:00:00Z"))
    wait_for(lambda: value(url, "labelbridge_sink_label_removals_total") == 1, timeout=60)
    pid = httpx.get(url + "/status").json()["delivery_worker"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: value(url, "labelbridge_delivery_worker_restarts_total") == 1)
    service.post(annotation(14, 140, "img-missing.jpg"))           # its lines are refused
    wait_for(lambda: value(url, "labelbridge_sink_lines_total", status="failed") >= 1, timeout=60)
    assert value(url, "labelbridge_sink_lines_total", status="failed") == 3
    assert value(url, "labelbridge_sink_imports_total", outcome="ok") == 3   # kept across


SECRETS = {"BASIC_AUTH_PASS": "basic-pass-3c1f9", "LABELBRIDGE_WEBHOOK_TOKEN": "hook-tok-77d02",
           "LABELBOX_API_KEY": "lb-key-5be10", "LABEL_STUDIO_API_KEY": "ls-key-a0a0a"}


@pytest.fixture()
def json_logged(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **SECRETS, "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG",
           "BASIC_AUTH_USER": "ls", "LABELBRIDGE_DATA_DIR": str(tmp_path / "var"),
           "LABELBRIDGE_PORT": str(port), "LABELBOX_PROJECT_ID": "cproject",
           "LABELBOX_ENDPOINT": "http://127.0.0.1:9/graphql",
           "LABELBOX_REST_ENDPOINT": "http://127.0.0.1:9/api", "LABELBOX_APP_URL": "http://127.0.0.1:9",
           "LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABELBRIDGE_RECONCILE_INTERVAL": "0",
           "LABELBRIDGE_RETRY_BASE": "5"}
    auth = ("ls", SECRETS["BASIC_AUTH_PASS"])
    log = tmp_path / "server.log"
    proc = start_process([sys.executable, "-m", "labelbridge", "serve"], env, url + "/health",
                         log, headers={"Authorization": httpx.BasicAuth(*auth)._auth_header})
    yield url, auth, log
    stop_process(proc)


def test_json_logs_carry_ids_and_never_a_secret(json_logged):
    url, auth, log = json_logged
    hook = {"X-Labelbridge-Token": SECRETS["LABELBRIDGE_WEBHOOK_TOKEN"]}
    body = annotation(21, 210, "img-1.jpg")
    body["project"].update(token="proj-invite-4e4e", task_data_password="data-pw-9d9d")
    r = httpx.post(url + "/webhook", json=body, headers={**hook, "X-Request-Id": "req-abc"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-abc"
    httpx.post(url + "/webhook", json=body, headers={"X-Labelbridge-Token": "wrong-tok-1b1b"})
    httpx.post(url + "/webhook", content=orjson.dumps(body)[:-40], headers=hook)
    httpx.post(url + "/setup", json={"access_token": "ls-access-8f8f"}, auth=auth)
    httpx.get(url + "/health", auth=("ls", "guess-6c6c"))
    wait_for(lambda: "labelbox" in log.read_text().lower(), timeout=20)   # delivery failed
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(e) for e in lines)
    (accepted,) = [e for e in lines
                   if e["msg"].startswith("webhook ANNOTATION_CREATED: 1 accepted")]
    assert accepted["request_id"] == "req-abc"
    assert (accepted["project"], accepted["task"], accepted["annotation"]) == (1, 210, 21)
    text = log.read_text()
    for secret in [*SECRETS.values(), "proj-invite-4e4e", "data-pw-9d9d", "wrong-tok-1b1b",
                   "ls-access-8f8f", "guess-6c6c"]:
        assert secret not in text, f"{secret} logged"


def test_a_read_only_data_dir_is_named_at_start_and_exits_2(tmp_path):
    data = tmp_path / "ro"
    data.mkdir()
    data.chmod(0o555)
    env = {**os.environ, "LABELBRIDGE_DATA_DIR": str(data), "LABELBRIDGE_PORT": str(free_port())}
    r = subprocess.run(unprivileged("serve"), env=env, text=True, capture_output=True,
                       timeout=60)
    assert r.returncode == 2, r.stderr
    message = r.stderr.replace("\n", "")          # the console may wrap a long path
    assert f"LABELBRIDGE_DATA_DIR={data}" in message and "not writable" in message
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 6, r.stderr


def test_readiness_and_the_health_check_name_an_unwritable_data_dir(tmp_path):
    port = free_port()
    data = tmp_path / "var"
    env = {**os.environ, "LABELBRIDGE_DATA_DIR": str(data), "LABELBRIDGE_PORT": str(port),
           "LABELBRIDGE_DELIVERY_WORKER": "off"}
    url = f"http://127.0.0.1:{port}"
    proc = start_process(unprivileged("serve"), env, url + "/health", tmp_path / "server.log")
    check = [sys.executable, "-m", "labelbridge", "healthcheck"]
    try:
        ok = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0 and "ready" in ok.stderr
        data.chmod(0o555)
        r = httpx.get(url + "/ready")
        assert r.status_code == 503 and r.json()["status"] == "degraded"
        (reason,) = r.json()["reasons"]
        assert reason.startswith(f"outbox unwritable: cannot write in {data}")
        bad = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
        assert bad.returncode == 1 and "outbox unwritable" in bad.stderr
        live = subprocess.run([*check, "--live"], env=env, capture_output=True, text=True,
                              timeout=30)
        assert live.returncode == 0 and "UP" in live.stderr
    finally:
        data.chmod(0o755)
        stop_process(proc)
