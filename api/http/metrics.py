"""Prometheus metrics: request counts and latencies by route, and background job counts.

`/metrics` serves the process's series plus a gauge of the job queue read from the
database at scrape time, so the queue is visible even when workers are other processes.
Under several server processes, set `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's
multiprocess mode) and the series of all of them are added up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["CONTENT_TYPE_LATEST", "count_job", "observe_request", "render_metrics"]

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from receiving a request to its last response byte, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
JOBS = Counter(
    "rebound_jobs_total",
    "Background jobs run, by kind and outcome (done, retry, deferred, dead).",
    ["kind", "outcome"],
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

# Children of the labelled series, looked up once per (method, route, status).
_request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """Count one answered request. Paths no route matched share one label value."""
    key = (method, route or UNMATCHED, status)
    children = _request_children.get(key)
    if children is None:
        label_method = method if method in _METHODS else "other"
        children = (
            HTTP_REQUESTS.labels(label_method, key[1], str(status)),
            HTTP_LATENCY.labels(label_method, key[1]),
        )
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def count_job(kind: str, outcome: str) -> None:
    JOBS.labels(kind, outcome).inc()


class JobQueueCollector(Collector):
    """`rebound_jobs{kind, status}`: the job table's rows by kind and status, right now."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "rebound_jobs",
            "Background jobs in the queue, by kind and status.",
            labels=["kind", "status"],
        )
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status")
                ).all()
        except SQLAlchemyError:
            return  # the request series are still worth serving; /readyz reports the database
        for kind, status, count in rows:
            gauge.add_metric([kind, status], count)
        yield gauge


def render_metrics(engine: Engine) -> bytes:
    """The Prometheus text exposition of this process (or all processes) and the queue."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        process_registry = CollectorRegistry()
        MultiProcessCollector(process_registry)  # type: ignore[no-untyped-call]
    else:
        process_registry = REGISTRY
    queue_registry = CollectorRegistry(auto_describe=False)
    queue_registry.register(JobQueueCollector(engine))
    return generate_latest(process_registry) + generate_latest(queue_registry)
