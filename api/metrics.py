"""GET /metrics in the Prometheus text format, written by prometheus_client.

HTTP figures are counted in each API process; under `orders api --workers N` they are summed across
its processes by prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, which `orders api`
sets up). Everything else is read at scrape time from PostgreSQL and RabbitMQ, so any API process
answers for the whole system and no worker needs a port of its own.
"""

import hmac
import os
import time
import uuid

from litestar import Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from events.context import correlation_id
from projections.status import ProjectionStatus, database_status, with_queues

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# In a registry of their own: the default one adds process metrics that mean nothing summed over processes.
HTTP = CollectorRegistry()
REQUESTS = Counter("orders_http_requests", "HTTP requests by route and status.", ["method", "route", "status"],
                   registry=HTTP)
LATENCY = Histogram("orders_http_request_seconds", "HTTP request latency by route.", ["method", "route"],
                    buckets=BUCKETS, registry=HTTP)

_PROJECTION_GAUGES = (
    ("orders_projection_checkpoint", "Position of the last event the projection applied.", "checkpoint"),
    ("orders_projection_behind_events", "Events of the projection's kinds not applied yet.", "events_behind"),
    ("orders_projection_lag_seconds", "Age of the oldest event the projection has not applied.", "lag_seconds"),
    ("orders_projection_queued_messages", "Messages waiting in the projection's queue.", "queued"),
    ("orders_projection_dead_lettered_messages", "Messages in the projection's dead-letter queue.", "dead_lettered"),
)


def measure_requests(app):
    """ASGI middleware recording each request's route template, status and duration."""

    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, watch)
        finally:
            route = scope.get("path_template") or "unmatched"
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)

    return middleware


class _Snapshot:
    """Gauges read once for one scrape, as a collector of that scrape's registry."""

    def __init__(self, families: list[GaugeMetricFamily]):
        self.families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self.families


def _gauges(statuses: list[ProjectionStatus], appended: int, oldest_tx: float) -> list[GaugeMetricFamily]:
    relay = next(s for s in statuses if s.name == "relay")
    families = [
        GaugeMetricFamily("orders_events_appended", "Position of the newest event in the store.", value=appended),
        GaugeMetricFamily("orders_events_published", "Position up to which the relay has published (confirmed).",
                          value=relay.checkpoint),
        GaugeMetricFamily("orders_relay_lag_seconds", "Age of the oldest event the relay has not published.",
                          value=relay.lag_seconds),
        GaugeMetricFamily("orders_relay_behind_events", "Events the relay has not published.",
                          value=relay.events_behind),
        GaugeMetricFamily("orders_oldest_transaction_seconds",
                          "Age of the oldest open writing transaction: readers of the event store wait for it.",
                          value=round(oldest_tx, 3)),
    ]
    for name, help, attr in _PROJECTION_GAUGES:
        family = GaugeMetricFamily(name, help, labels=["projection"])
        for s in statuses:
            if s.name != "relay" and getattr(s, attr) is not None:
                family.add_metric([s.name], getattr(s, attr))
        families.append(family)
    return families


async def _system(state: State) -> list[GaugeMetricFamily]:
    """The event store's, the relay's and each projection's figures, as they are now."""
    async with state.pool.connection() as conn:
        statuses = await database_status(conn)
        cur = await conn.execute(
            "SELECT (SELECT coalesce(max(position), 0) FROM events),"
            " (SELECT coalesce(extract(epoch FROM now() - min(xact_start)), 0) FROM pg_stat_activity"
            "  WHERE backend_xid IS NOT NULL AND datname = current_database())")
        appended, oldest_tx = await cur.fetchone()
    return _gauges(await with_queues(statuses, await state.broker.connection()), appended, float(oldest_tx))


def _registry() -> CollectorRegistry:
    """This scrape's registry: the HTTP figures of every process of this `orders api` (of this one
    process outside multiprocess mode)."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # as prometheus_client itself decides, at import
        return HTTP
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


async def metrics_token(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """With METRICS_TOKEN set, /metrics answers only to `Authorization: Bearer <METRICS_TOKEN>`."""
    if token := connection.app.state.settings.metrics_token:
        given = connection.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise NotAuthorizedException("GET /metrics needs the METRICS_TOKEN as a bearer token")


@get("/metrics", opt={"public": True, "problems": {401: "METRICS_TOKEN is set and was not given."}},
     guards=[metrics_token], operation_id="metrics", tags=["operations"], summary="Prometheus metrics",
     media_type=CONTENT_TYPE_LATEST)
async def metrics(state: State) -> Response[bytes]:
    """Requests and latency by route (summed over the processes of this `orders api`), and the
    event store's, relay's and projections' figures, shared for a second by every caller (api/probes.py)."""
    system = _Snapshot(await state.system_figures.get(lambda: _system(state)))
    return Response(generate_latest(_registry()) + generate_latest(system), media_type=CONTENT_TYPE_LATEST)


def correlate(app):
    """ASGI middleware: the request's X-Correlation-ID (or a new one) goes on its events, its log lines
    and its response."""
    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"x-correlation-id", b"").decode("latin-1")
        try:
            cid = uuid.UUID(raw)
        except ValueError:
            cid = uuid.uuid4()
        scope["correlation_id"] = cid
        token = correlation_id.set(str(cid))

        async def tag(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-correlation-id", str(cid).encode()))
            await send(message)

        try:
            await app(scope, receive, tag)
        finally:
            correlation_id.reset(token)

    return middleware
