"""Prometheus metrics: requests and latency per route template, and the workflows' gauges read at scrape time."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Iterable, Iterator, Mapping

from peewee import PeeweeException
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from jobs.tasks import SCHEDULE
from models import Delivery, JobRun, OutboxMessage, OutboxStatus, utcnow
from workflows.delivery import DeliveryState

CONTENT_TYPE = CONTENT_TYPE_LATEST
# gunicorn's configuration sets it (and empties the folder at start): each worker writes its counters to files
# there, and the scrape, answered by any one worker, adds them up.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A request no URL rule matched (404, or a method the rule refuses before routing) counts under this label.
UNMATCHED_ROUTE = "unmatched"
# Other methods count as "other": a label must not take whatever a client writes.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Requests that came through a proxy say so; /metrics is read from the instance itself, never through nginx
# (where every client would seem to come from nginx's own, allowed, address).
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")

# The `_created` series would double the counters' series; nothing here reads them (multiprocess mode has none).
disable_created_metrics()

HTTP_REQUESTS = Counter(
    "myhug_http_requests",
    "HTTP requests answered, by method, route template (the URL rule, never the path) and status.",
    ("method", "route", "status"),
)
HTTP_DURATION = Histogram(
    "myhug_http_request_duration_seconds",
    "Time to build the answer (the last byte of a file may leave later), by route template.",
    ("route",),
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method if method in METHODS else "other", route, str(status)).inc()
    HTTP_DURATION.labels(route).observe(seconds)


class WorkflowGauges:
    """What the database says at scrape time: deliveries per state, the outbox, how long since each job last
    succeeded. A handful of indexed queries; answered once per scrape whatever the number of workers."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("myhug_database_up", "1 if the database answered this scrape's queries, else 0.")
        try:
            deliveries = Delivery.count_by_state()
            messages = OutboxMessage.counts_by_status()
            successes = JobRun.last_successes(job.name for job in SCHEDULE)
        except PeeweeException:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from delivery_gauges(deliveries)
        yield from outbox_gauges(messages)
        yield from job_gauges(successes)


def delivery_gauges(counts: Mapping[str, int]) -> Iterator[Metric]:
    gauge = GaugeMetricFamily("myhug_deliveries", "Deliveries in each state.", labels=("state",))
    for state in DeliveryState:
        if state is not DeliveryState.NEW:
            gauge.add_metric([state.value], counts.get(state.value, 0))
    yield gauge


def outbox_gauges(counts: Mapping[str, int]) -> Iterator[Metric]:
    gauge = GaugeMetricFamily("myhug_outbox_messages", "Outgoing e-mails and SMS in each status.", labels=("status",))
    for status in OutboxStatus.ALL:
        gauge.add_metric([status], counts.get(status, 0))
    yield gauge
    depth = counts.get(OutboxStatus.PENDING, 0) + counts.get(OutboxStatus.SENDING, 0)
    yield GaugeMetricFamily("myhug_outbox_depth", "Messages still to leave: pending plus sending.", value=depth)


def job_gauges(successes: Mapping) -> Iterator[Metric]:
    """+Inf for a job that never succeeded: it is overdue, and an alert on `> 3 * period` must say so."""
    since = GaugeMetricFamily(
        "myhug_job_seconds_since_last_success",
        "Seconds since the job last finished a successful run (+Inf: never).",
        labels=("job",),
    )
    period = GaugeMetricFamily("myhug_job_period_seconds", "How often the scheduler runs the job.", labels=("job",))
    now = utcnow()
    for job in SCHEDULE:
        finished = successes.get(job.name)
        since.add_metric([job.name], (now - finished).total_seconds() if finished else math.inf)
        period.add_metric([job.name], job.every.total_seconds())
    yield since
    yield period


def exposition() -> bytes:
    """The text a scrape receives: this process's counters (all workers' under gunicorn), then the gauges."""
    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(REGISTRY)  # a registry is a collector too: this process's counters and process metrics
    registry.register(WorkflowGauges())
    return generate_latest(registry)


def may_scrape(environ: Mapping, allowed: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether the peer that opened this connection is in `allowed`, and spoke for itself (not for a client behind
    a proxy). The peer is the socket's address, before any ProxyFix rewrote REMOTE_ADDR from a header."""
    if any(environ.get(header) for header in FORWARDING_HEADERS):
        return False
    peer = (environ.get("werkzeug.proxy_fix.orig") or {}).get("REMOTE_ADDR") or environ.get("REMOTE_ADDR")
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a server listening on [::] sees IPv4 peers as ::ffff:a.b.c.d
    return any(address in network for network in allowed)
