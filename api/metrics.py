"""GET /metrics in the Prometheus text format.

HTTP figures are this process's own; everything else is read at scrape time from PostgreSQL and
RabbitMQ, so any API process answers for the whole system and no worker needs a port of its own.
"""

import hmac
import time
import uuid
from collections import defaultdict

from litestar import Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler

from events.context import correlation_id
from projections.status import database_status, with_queues

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class HttpMetrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * (len(BUCKETS) + 2))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        h = self.latency[(method, route)]
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                h[i] += 1
        h[-2] += 1  # +Inf bucket (= count)
        h[-1] += seconds  # sum

    def lines(self) -> list[str]:
        out = ["# HELP orders_http_requests_total HTTP requests by route and status.",
               "# TYPE orders_http_requests_total counter"]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(f'orders_http_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
        out += ["# HELP orders_http_request_seconds HTTP request latency by route.",
                "# TYPE orders_http_request_seconds histogram"]
        for (method, route), h in sorted(self.latency.items()):
            labels = f'method="{method}",route="{route}"'
            for bound, n in zip((*BUCKETS, "+Inf"), h[:-1], strict=True):
                out.append(f'orders_http_request_seconds_bucket{{{labels},le="{bound}"}} {int(n)}')
            out += [f"orders_http_request_seconds_count{{{labels}}} {int(h[-2])}",
                    f"orders_http_request_seconds_sum{{{labels}}} {h[-1]:.6f}"]
        return out


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
            scope["app"].state.http_metrics.observe(scope["method"], route, status, time.perf_counter() - started)

    return middleware


def _gauge(name: str, help: str, samples: list[tuple[str, float]]) -> list[str]:
    return [f"# HELP {name} {help}", f"# TYPE {name} gauge", *(f"{name}{labels} {value}" for labels, value in samples)]


async def metrics_token(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """With METRICS_TOKEN set, /metrics answers only to `Authorization: Bearer <METRICS_TOKEN>`."""
    if token := connection.app.state.settings.metrics_token:
        given = connection.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise NotAuthorizedException("GET /metrics needs the METRICS_TOKEN as a bearer token")


@get("/metrics", opt={"public": True}, guards=[metrics_token], operation_id="metrics", tags=["operations"],
     include_in_schema=True, summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(state: State) -> Response[str]:
    # The system's figures are shared for a second by every caller (api/probes.py); HTTP ones are live.
    lines = state.http_metrics.lines() + await state.system_figures.get(lambda: _system(state))
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


async def _system(state: State) -> list[str]:
    async with state.pool.connection() as conn:
        statuses = await database_status(conn)
        cur = await conn.execute(
            "SELECT (SELECT coalesce(max(position), 0) FROM events),"
            " (SELECT coalesce(extract(epoch FROM now() - min(xact_start)), 0) FROM pg_stat_activity"
            "  WHERE backend_xid IS NOT NULL AND datname = current_database())")
        appended, oldest_tx = await cur.fetchone()
    statuses = await with_queues(statuses, await state.broker.connection())
    relay = next(s for s in statuses if s.name == "relay")
    projections = [s for s in statuses if s.name != "relay"]
    lines = _gauge("orders_events_appended", "Position of the newest event in the store.", [("", appended)])
    lines += _gauge("orders_events_published", "Position up to which the relay has published (confirmed).",
                    [("", relay.checkpoint)])
    lines += _gauge("orders_relay_lag_seconds", "Age of the oldest event the relay has not published.",
                    [("", relay.lag_seconds)])
    lines += _gauge("orders_relay_behind_events", "Events the relay has not published.", [("", relay.events_behind)])
    for metric, help, attr in (
        ("orders_projection_checkpoint", "Position of the last event the projection applied.", "checkpoint"),
        ("orders_projection_behind_events", "Events of the projection's kinds not applied yet.", "events_behind"),
        ("orders_projection_lag_seconds", "Age of the oldest event the projection has not applied.", "lag_seconds"),
        ("orders_projection_queued_messages", "Messages waiting in the projection's queue.", "queued"),
        ("orders_projection_dead_lettered_messages", "Messages in the projection's dead-letter queue.",
         "dead_lettered"),
    ):
        lines += _gauge(metric, help, [(f'{{projection="{s.name}"}}', getattr(s, attr)) for s in projections
                                       if getattr(s, attr) is not None])
    lines += _gauge("orders_oldest_transaction_seconds",
                    "Age of the oldest open writing transaction: readers of the event store wait for it.",
                    [("", round(float(oldest_tx), 3))])
    return lines


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
