"""Every Prometheus metric of ``/metrics`` moves when it should (through the app, delivery in a
thread so the sink's figures are this process's). The worker process's figures reaching the
server, and Labelbox errors by kind, are in tests/integration/test_server_observability.py."""

from __future__ import annotations

import copy

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import IMAGE_CONFIG, bbox, capture, export_row, wait_for

HOOK = {"X-Labelbridge-Token": "hook-secret"}
CREATED = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
RUN = "crun000000000000000000001"


def with_key(body: dict, key: str, ann_id: int = 6) -> dict:
    body = copy.deepcopy(body)
    body["task"]["data"]["global_key"] = key
    body["annotation"]["id"] = ann_id
    return body


@pytest.fixture()
def app(tmp_path):
    export = tmp_path / "export.ndjson"
    row = export_row([bbox("cfeat00000000000000000001", "Car", 10, 10, 50, 40)],
                     global_key="img-1.jpg",
                     runs={RUN: {"predictions": [{"annotations": {"objects": [
                         bbox("cfeat00000000000000000001", "Car", 10, 10, 50, 40)]}}]}})
    export.write_bytes(orjson.dumps(row) + b"\n")
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path / "var", LABELBRIDGE_EXPORT=export,
                        LABELBRIDGE_WEBHOOK_TOKEN="hook-secret",
                        LABELBRIDGE_DELIVERY_WORKER="thread", LABELBRIDGE_BATCH_MAX_WAIT=0.05,
                        LABELBRIDGE_MAX_BODY_WEBHOOK="64KiB")
    with TestClient(create_app(settings)) as client:
        yield client


def scrape(client) -> dict[tuple, float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(client, do, name: str, **labels) -> float:
    before = value(scrape(client), name, **labels)
    do()
    return value(scrape(client), name, **labels) - before


def predict(client, *keys):
    tasks = [{"id": i, "data": {"image": "http://x/y.jpg", "global_key": k}}
             for i, k in enumerate(keys, 1)]
    r = client.post("/predict", json={"tasks": tasks, "label_config": IMAGE_CONFIG})
    assert r.status_code == 200


def test_predict_requests_predictions_served_and_lookups_missed(app):
    act = lambda: predict(app, "img-1.jpg", "unknown.jpg", "img-1.jpg")  # noqa: E731
    assert moved(app, act, "labelbridge_predict_requests_total") == 1
    assert moved(app, act, "labelbridge_predictions_served_total") == 2
    assert moved(app, act, "labelbridge_prediction_lookups_missed_total") == 1


@pytest.mark.parametrize("send, action, outcome", [
    (lambda c: c.post("/webhook", json=with_key(CREATED, "a.jpg"), headers=HOOK),
     "ANNOTATION_CREATED", "accepted"),
    (lambda c: c.post("/webhook", json=capture(
        "basic-auth-flow/ml-auto-webhook_TASKS_CREATED.json"), headers=HOOK),
     "TASKS_CREATED", "ignored"),
    (lambda c: c.post("/webhook", json=dict(CREATED, annotation={}), headers=HOOK),
     "ANNOTATION_CREATED", "rejected"),
    (lambda c: c.post("/webhook", json={"action": "SOMETHING_ELSE_" * 5}, headers=HOOK),
     "other", "ignored"),
    (lambda c: c.post("/webhook", content=b"{nope", headers=HOOK), "none", "rejected"),
    (lambda c: c.post("/webhook", json=CREATED), "ANNOTATION_CREATED", "unauthorized"),
])
def test_webhooks_by_action_and_outcome(app, send, action, outcome):
    assert moved(app, lambda: send(app), "labelbridge_webhooks_total", action=action,
                 outcome=outcome) == 1


def test_annotations_by_outcome(app):
    body = with_key(CREATED, "b.jpg", 40)
    assert moved(app, lambda: app.post("/webhook", json=body, headers=HOOK),
                 "labelbridge_webhook_annotations_total", outcome="accepted") == 1
    assert moved(app, lambda: app.post("/webhook", json=body, headers=HOOK),
                 "labelbridge_webhook_annotations_total", outcome="duplicate") == 1
    skipped = with_key(CREATED, "c.jpg", 41)
    skipped["annotation"].update(was_cancelled=True, result=[])
    assert moved(app, lambda: app.post("/webhook", json=skipped, headers=HOOK),
                 "labelbridge_webhook_annotations_total", outcome="ignored") == 1


def test_requests_and_latency_by_route(app):
    assert moved(app, lambda: app.get("/health"), "labelbridge_http_requests_total",
                 route="/health", method="GET", status="200") == 1
    assert moved(app, lambda: app.get("/health"),
                 "labelbridge_http_request_duration_seconds_count", route="/health") == 1
    assert moved(app, lambda: app.get("/no/such/path"), "labelbridge_http_requests_total",
                 route="other", method="GET", status="404") == 1


def test_refused_bodies_are_counted(app):
    big = with_key(CREATED, "big.jpg")
    big["task"]["data"]["pad"] = "x" * (70 << 10)
    assert moved(app, lambda: app.post("/webhook", json=big, headers=HOOK),
                 "labelbridge_http_refused_total", reason="body_too_large") == 1


def test_outbox_gauges_and_the_rejected_count(app):
    assert moved(app, lambda: app.post("/webhook", json={"action": 1}, headers=HOOK),
                 "labelbridge_outbox_rejected_bodies") == 1
    # a task without a data row becomes a dead letter at once
    app.post("/webhook", json=with_key(CREATED, "", 50), headers=HOOK)
    wait_for(lambda: value(scrape(app), "labelbridge_outbox_dead_letters") == 1)
    assert value(scrape(app), "labelbridge_outbox_items", state="failed") == 1
    assert value(scrape(app), "labelbridge_outbox_up") == 1
    assert value(scrape(app), "labelbridge_index_rows") == 1


def test_sink_imports_lines_and_import_time(app):
    def deliver():
        app.post("/webhook", json=with_key(CREATED, "img-1.jpg", 60), headers=HOOK)
        wait_for(lambda: value(scrape(app), "labelbridge_outbox_items", state="delivered") >= 1)

    before = scrape(app)
    deliver()
    after = scrape(app)
    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    assert grew("labelbridge_sink_imports_total", outcome="ok") == 1
    assert grew("labelbridge_sink_lines_total", status="ok") == 3   # two boxes, one choice
    assert grew("labelbridge_sink_import_duration_seconds_count") == 1


def test_pending_items_and_their_age(tmp_path):
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path, LABELBRIDGE_DELIVERY_WORKER="off")
    with TestClient(create_app(settings)) as client:
        assert value(scrape(client), "labelbridge_outbox_items", state="pending") == 0
        client.post("/webhook", json=with_key(CREATED, "a.jpg"))
        samples = scrape(client)
        assert value(samples, "labelbridge_outbox_items", state="pending") == 1
        assert value(samples, "labelbridge_outbox_oldest_pending_age_seconds") > 0
        assert value(samples, "labelbridge_outbox_due_items") == 1


def test_json_figures_stay_at_status_and_metrics_format_json(app):
    predict(app, "img-1.jpg")
    status = app.get("/status").json()
    assert status == app.get("/metrics?format=json").json() | {"outbox": status["outbox"]}
    assert status["counters"]["predictions_served"] == 1 and status["index_rows"] == 1


def test_the_metered_sink_is_the_sink_it_wraps(tmp_path):
    """Every method of the ``Sink`` protocol, with its signature, passed on (a removal with the
    protocol's arguments reached the wrapped sink only if the wrapper takes them)."""
    import inspect

    from labelbridge.groundtruth.file_sink import FileSink
    from labelbridge.model.sink import Sink
    from labelbridge.service.sink_metrics import MeteredSink

    for name in ("import_lines", "remove_labels"):
        ours, protocol = (inspect.signature(getattr(c, name)).parameters.values()
                          for c in (MeteredSink, Sink))
        assert [(p.kind, p.default) for p in ours] == [(p.kind, p.default) for p in protocol]
    sink = MeteredSink(FileSink(tmp_path))
    assert sink.remove_labels({"globalKey": "a.jpg"}, lambda labels: [], 7, ["u1"]) == []
    assert orjson.loads((tmp_path / "removals.ndjson").read_bytes())["annotationId"] == 7
