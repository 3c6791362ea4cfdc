"""Traces over OTLP, configured only by OpenTelemetry's own environment variables.

`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns a
service's tracing on: it gets a tracer provider of its own, named by
`OTEL_SERVICE_NAME` or else by the service, sampled as `OTEL_TRACES_SAMPLER`
says, exporting over OTLP/HTTP in batches from one background thread. Every
other `OTEL_*` variable the SDK reads applies as the SDK documents it.

With no endpoint, no provider is made: no thread, no span kept, no middleware.
The process's global provider is used instead, which is OpenTelemetry's no-op
unless something in the process installed one (`opentelemetry-instrument`, or a
test's in-memory exporter); only then is anything traced.

Each service has its own provider, never the global one, so that the three
services run in one process (as the tests do) still export as three services.

The W3C trace context crosses every boundary as text: `traceparent` and
`tracestate`, in an outbox row, then in the AMQP message's headers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Probes and scrapes are not what anyone traces, and would drown what is.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"
MAX_LINKS = 10_000

W3C = TraceContextTextMapPropagator()


class Tracing:
    """One service's tracing: a tracer provider, and whether anything is traced at all."""

    def __init__(self, provider: trace.TracerProvider | None = None, *, own: bool = False) -> None:
        self._provider = provider
        self._own = own

    @classmethod
    def from_environment(cls, service: str) -> Tracing:
        """The service's tracing as the `OTEL_*` variables ask (the SDK reads them too)."""
        environ = os.environ
        endpoint = next((environ[name] for name in ENDPOINT_VARIABLES if environ.get(name)), None)
        disabled = (
            environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
            or environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"
        )
        if endpoint is None or disabled:
            return cls()
        # Imported here: a service that exports nothing never loads the exporter.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = environ.get("OTEL_SERVICE_NAME") or service
        # `Resource.create` adds OTEL_RESOURCE_ATTRIBUTES; the sampler comes from
        # OTEL_TRACES_SAMPLER(_ARG), the exporter's endpoint, headers and timeout from theirs.
        # A billing batch links every message it recorded: up to its largest batch, unless
        # OTEL_SPAN_LINK_COUNT_LIMIT says otherwise (the SDK's default keeps 128).
        links = None if environ.get("OTEL_SPAN_LINK_COUNT_LIMIT") else MAX_LINKS
        provider = SdkTracerProvider(
            resource=Resource.create({SERVICE_NAME: name}),
            span_limits=SpanLimits(max_links=links),
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider, own=True)

    @property
    def enabled(self) -> bool:
        """Whether spans are made at all: a provider of our own, or an SDK one installed."""
        return self._own or isinstance(self._provider_now(), SdkTracerProvider)

    def tracer(self, name: str) -> trace.Tracer:
        return self._provider_now().get_tracer(name)

    def instrument(self, app: FastAPI) -> None:
        """A server span per request (probes and scrapes excepted), when tracing is on."""
        if not self.enabled:
            return
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self._provider_now(),
            excluded_urls=EXCLUDED_URLS,
            # One span per request: not one more per ASGI message sent or received.
            exclude_spans=["receive", "send"],
        )

    def shutdown(self) -> None:
        """Export what is left and stop the exporter's thread (blocks: run it in a thread)."""
        if self._own and isinstance(self._provider, SdkTracerProvider):
            self._provider.shutdown()

    def _provider_now(self) -> trace.TracerProvider:
        return self._provider if self._provider is not None else trace.get_tracer_provider()


def current_context() -> tuple[str | None, str | None]:
    """The current span's W3C `traceparent` and `tracestate`, or Nones outside any span."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None, None
    carrier: dict[str, str] = {}
    W3C.inject(carrier)
    return carrier.get(TRACEPARENT), carrier.get(TRACESTATE) or None


def context_from(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """The context a stored `traceparent` names, to parent a span on; None when there is none."""
    if not traceparent:
        return None
    carrier = {TRACEPARENT: traceparent}
    if tracestate:
        carrier[TRACESTATE] = tracestate
    context = W3C.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def context_from_headers(headers: Mapping[str, Any] | None) -> Context | None:
    """The context of an AMQP message's headers (values may arrive as bytes)."""
    if not headers:
        return None
    return context_from(_text(headers.get(TRACEPARENT)), _text(headers.get(TRACESTATE)))


def trace_id_in(headers: Mapping[str, Any] | None) -> str | None:
    """The trace id of a message's `traceparent` header, for its log lines; None without one."""
    traceparent = _text((headers or {}).get(TRACEPARENT))
    parts = traceparent.split("-") if traceparent else []
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def inject_into(headers: MutableMapping[str, Any]) -> None:
    """Put the current span's context into message headers."""
    W3C.inject(headers)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


def add_trace_ids(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the current span's trace and span ids on every line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event
