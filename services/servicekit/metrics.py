"""Prometheus metrics every service exposes, and the HTTP middleware that records them.

Metrics live in the default registry, created once at import; `/metrics` is
prometheus-client's own exposition.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency; by status too, so that slow failures do not hide in the route's.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENTS_PUBLISHED = Counter(
    "events_published_total", "Events confirmed by the broker, by routing key.", ["routing_key"]
)
EVENTS_PUBLISH_FAILED = Counter(
    "events_publish_failed_total", "Outbox publish attempts that failed.", ["routing_key"]
)
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Events written but not yet confirmed by the broker.")
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_age_seconds", "Age of the oldest event waiting in the outbox."
)


class HttpMetricsMiddleware:
    """Counts requests and latency by route template (never by raw path: ids would explode)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template != "/metrics":
                method = scope["method"]
                HTTP_REQUESTS.labels(method, template, str(status)).inc()
                HTTP_LATENCY.labels(method, template, str(status)).observe(
                    time.perf_counter() - started
                )
