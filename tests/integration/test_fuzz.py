"""Fuzzing a real server with a fixed budget: schemathesis against ``/openapi.json`` (every
endpoint, with auth, positive and negative cases) and the project's own mutator of Label
Studio's captured requests (``tests/fuzz.py``). Zero 5xx; every 4xx is JSON with ``detail``;
no refused body keeps a project secret. Deterministic: the same cases every run."""

from __future__ import annotations

import base64
import os
import sys
from collections import Counter

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from labelbridge.groundtruth.outbox import Outbox

from tests.fuzz import SECRET_VALUES, Mutator
from tests.helpers import IMAGE_CONFIG, captured_task_export
from tests.procs import free_port, start_process, stop_process

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
HOOK = {"X-Labelbridge-Token": "hook-secret"}
SCHEMATHESIS_EXAMPLES = 150      # per operation and generation mode
MUTATED_CASES = 4000


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    captured_task_export(tmp / "export.ndjson")
    (tmp / "config.xml").write_text(IMAGE_CONFIG)
    port = free_port()
    env = {**os.environ, "LABELBRIDGE_EXPORT": str(tmp / "export.ndjson"),
           "LABELBRIDGE_LABEL_CONFIG": str(tmp / "config.xml"),
           "LABELBRIDGE_DATA_DIR": str(tmp / "var"), "LABELBRIDGE_PORT": str(port),
           "BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": "s3cret",
           "LABELBRIDGE_WEBHOOK_TOKEN": "hook-secret", "LABELBRIDGE_DELIVERY_WORKER": "off",
           "LABELBRIDGE_MAX_BODY_WEBHOOK": "2MiB", "LABELBRIDGE_MAX_BODY_PREDICT": "2MiB",
           "LABELBRIDGE_MAX_PREDICT_TASKS": "1000", "LABELBRIDGE_MAX_REGIONS": "500"}
    url = f"http://127.0.0.1:{port}"
    log = tmp / "server.log"
    proc = start_process([sys.executable, "-m", "labelbridge", "serve"], env, url + "/health",
                         log, headers=AUTH)
    yield url, tmp / "var", log
    stop_process(proc)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def api_schema(fuzzed):
    url, _, _ = fuzzed
    schema = schemathesis.openapi.from_url(url + "/openapi.json", headers=AUTH)
    schema.config.generation.update(with_security_parameters=False)
    return schema


def four_xx_is_json(ctx, response, case) -> None:
    if 400 <= response.status_code < 500:
        assert response.headers.get("content-type", [""])[0].startswith("application/json"), \
            f"{response.status_code} is not JSON"
        assert "detail" in orjson.loads(response.content), response.content[:200]


POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# Every operation with data that fits the schema; those with a body with data that does not too
# (an operation without parameters has nothing to negate).
CASES = [(m, p, POSITIVE) for m, p in (("GET", "/"), ("GET", "/health"), ("GET", "/versions"),
                                       ("GET", "/metrics"), ("GET", "/status"), ("GET", "/ready"))]
CASES += [(m, p, mode) for m, p in (("POST", "/setup"), ("POST", "/predict"),
                                    ("POST", "/webhook")) for mode in (POSITIVE, NEGATIVE)]


@pytest.mark.parametrize("method, path, mode", CASES, ids=[f"{m} {p} {g}" for m, p, g in CASES])
def test_schemathesis_finds_no_5xx_and_only_json_4xx(api_schema, method, path, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=SCHEMATHESIS_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), derandomize=True)
    def run(case):
        response = case.call_and_validate(headers={**AUTH, **HOOK}, checks=[
            not_a_server_error, status_code_conformance, content_type_conformance,
            response_schema_conformance], additional_checks=[four_xx_is_json], timeout=30)
        statuses[response.status_code] += 1

    statuses: Counter = Counter()
    run()
    if method == "POST":      # a body to vary: the budget is spent, on more than one answer
        assert sum(statuses.values()) >= SCHEMATHESIS_EXAMPLES // 2 and len(statuses) > 1, \
            statuses


def test_mutated_label_studio_requests_find_no_5xx(fuzzed):
    url, data_dir, _ = fuzzed
    statuses: Counter = Counter()
    failures = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i, (path, raw) in enumerate(Mutator(seed=16).cases(MUTATED_CASES)):
            headers = {"Content-Type": "application/json", **(HOOK if path == "/webhook" else AUTH)}
            if i % 50 == 0:
                headers = {"Content-Type": "text/plain"}          # no auth at all
            r = client.post(path, content=raw, headers=headers)
            statuses[(path, r.status_code)] += 1
            if r.status_code >= 500:
                failures.append((path, r.status_code, raw[:300], r.text[:300]))
            elif r.status_code >= 400:
                if not r.headers["content-type"].startswith("application/json") \
                        or "detail" not in r.json():
                    failures.append((path, r.status_code, raw[:300], r.text[:300]))
    assert not failures, f"{len(failures)} bad answers, first: {failures[:3]}"
    # The mutations reach every answer: acceptance, refusal, each limit.
    for want in [("/webhook", 200), ("/webhook", 400), ("/webhook", 422), ("/webhook", 401),
                 ("/predict", 200), ("/predict", 422), ("/setup", 200)]:
        assert statuses[want], f"no {want} among {dict(statuses)}"
    ob = Outbox(data_dir / "outbox.sqlite3")
    kept = ob.rejected(MUTATED_CASES)
    ob.close()
    assert len(kept) > 100
    for row in kept:
        stored = row["body"] + orjson.dumps(row["headers"])
        for secret in SECRET_VALUES.values():
            assert secret[:9].encode() not in stored, (row["reason"], row["body"][:500])
