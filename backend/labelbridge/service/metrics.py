"""Prometheus metrics of the server (text exposition at ``/metrics``).

Counted as it happens: predictions served and lookups missed, webhooks by action and outcome,
annotations by outcome, requests and their latency by route, connections and requests refused
by the limits. Read at scrape time, off the event loop: the outbox (items by state, oldest
pending age, dead letters, rejected bodies), the index and the delivery worker. Delivery's own
figures (``service.sink_metrics``) come from the worker process through prometheus-client's
multiprocess files, or from this process when delivery runs in a thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from labelbridge.labelstudio.webhooks import KNOWN_ACTIONS
from labelbridge.service import sink_metrics

disable_created_metrics()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTES = ("/", "/health", "/setup", "/predict", "/versions", "/metrics", "/status", "/ready",
          "/webhook", "/openapi.json")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 100.0)


class Metrics:
    def __init__(self, snapshot: Callable[[], dict[str, Any]], worker_dir: Path | None = None,
                 in_process_delivery: bool = False) -> None:
        """``snapshot()``: the figures read at scrape time (``Runtime.snapshot``), called in a
        worker thread; ``worker_dir``: the delivery process's multiprocess files."""
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.predict_requests = Counter("labelbridge_predict_requests", "POST /predict "
                                        "requests answered", registry=r)
        self.predictions_served = Counter("labelbridge_predictions_served", "Tasks answered "
                                          "with a prediction", registry=r)
        self.lookups_missed = Counter("labelbridge_prediction_lookups_missed", "Tasks answered "
                                      "without one (no data row matched, or nothing to predict)",
                                      registry=r)
        self.webhooks = Counter("labelbridge_webhooks", "Webhook requests by action and outcome "
                                "(accepted, ignored, rejected, unauthorized, unavailable)",
                                ["action", "outcome"], registry=r)
        self.annotations = Counter("labelbridge_webhook_annotations", "Annotation events in "
                                   "webhooks by outcome (accepted, duplicate, ignored)",
                                   ["outcome"], registry=r)
        self.requests = Counter("labelbridge_http_requests", "HTTP requests by route, method "
                                "and status", ["route", "method", "status"], registry=r)
        self.latency = Histogram("labelbridge_http_request_duration_seconds", "Time from the "
                                 "request head to the end of the response, by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.refused = Counter("labelbridge_http_refused", "Connections and requests cut off by "
                               "a limit (body_too_large, body_timeout, head_too_large, "
                               "head_timeout, connection_cap)", ["reason"], registry=r)
        self._latency = {route: self.latency.labels(route) for route in (*ROUTES, "other")}
        self._requests: dict[tuple, Any] = {}
        r.register(_Snapshot(snapshot))
        self._extra: list[CollectorRegistry] = []
        if worker_dir is not None:
            self._extra.append(_multiprocess(worker_dir))
        elif in_process_delivery:
            self._extra.append(sink_metrics.REGISTRY)

    def route(self, path: str) -> str:
        return path if path in self._latency else ("/webhook" if path == "/webhook/" else "other")

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self._latency[route].observe(seconds)
        key = (route, method, status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self.requests.labels(route, method if method in _METHODS else "OTHER",
                                           str(status))
            if len(self._requests) < 10_000:
                self._requests[key] = counter
        counter.inc()

    def webhook(self, action: Any, outcome: str) -> None:
        name = action if isinstance(action, str) and action in KNOWN_ACTIONS \
            else ("none" if not action else "other")
        self.webhooks.labels(name, outcome).inc()

    def counters(self) -> dict[str, Any]:
        """The counted figures as plain numbers (for ``/status``)."""
        def total(metric: Counter) -> dict[tuple, float]:
            return {tuple(s.labels.values()): s.value for m in metric.collect()
                    for s in m.samples if s.name.endswith("_total")}

        webhooks: dict[str, dict[str, int]] = {}
        for (action, outcome), n in total(self.webhooks).items():
            webhooks.setdefault(action, {})[outcome] = int(n)
        return {
            "predict_requests": int(total(self.predict_requests).get((), 0)),
            "predictions_served": int(total(self.predictions_served).get((), 0)),
            "prediction_lookups_missed": int(total(self.lookups_missed).get((), 0)),
            "webhooks": webhooks,
            "webhook_unauthorized": sum(v.get("unauthorized", 0) for v in webhooks.values()),
            "annotations": {k[0]: int(n) for k, n in total(self.annotations).items()},
            "refused": {k[0]: int(n) for k, n in total(self.refused).items()},
        }

    def render(self) -> bytes:
        """The exposition text (blocking: call it off the event loop)."""
        return b"".join(generate_latest(reg) for reg in (self.registry, *self._extra))


_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def _multiprocess(path: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return registry


class _Snapshot:
    """Gauges read when scraped: the outbox, the index and the delivery worker."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def describe(self) -> list:
        return []

    def collect(self):
        snap = self.snapshot()
        outbox = snap.get("outbox")
        up = GaugeMetricFamily("labelbridge_outbox_up", "1 when the outbox answered the scrape")
        up.add_metric([], 0 if outbox is None else 1)
        yield up
        if outbox is not None:
            items = GaugeMetricFamily("labelbridge_outbox_items", "Outbox items by state",
                                      labels=["state"])
            for state, n in outbox["counts"].items():
                items.add_metric([state], n)
            yield items
            for name, key, doc in (
                    ("labelbridge_outbox_oldest_pending_age_seconds", "oldest_pending_age_s",
                     "Age of the oldest item waiting for delivery (0 when none)"),
                    ("labelbridge_outbox_due_items", "due", "Items due for delivery now"),
                    ("labelbridge_outbox_in_doubt_items", "in_doubt", "Items in an import that "
                     "may have reached the sink (resumed by name)"),
                    ("labelbridge_outbox_dead_letters", "dead_letters", "Items that failed for "
                     "good (labelbridge outbox dead)"),
                    ("labelbridge_outbox_rejected_bodies", "rejected", "Refused webhook bodies "
                     "kept (labelbridge outbox rejected)")):
                gauge = GaugeMetricFamily(name, doc)
                gauge.add_metric([], outbox.get(key) or 0)
                yield gauge
        rows = GaugeMetricFamily("labelbridge_index_rows", "Data rows in the prediction index")
        rows.add_metric([], snap.get("index_rows", 0))
        yield rows
        worker = snap.get("delivery_worker") or {}
        if worker.get("mode") == "process":
            alive = GaugeMetricFamily("labelbridge_delivery_worker_up", "1 while the delivery "
                                      "worker process runs")
            alive.add_metric([], 1 if worker.get("alive") else 0)
            yield alive
            restarts = CounterMetricFamily("labelbridge_delivery_worker_restarts", "Times the "
                                           "delivery worker process was restarted")
            restarts.add_metric([], worker.get("restarts", 0))
            yield restarts
