"""Tracing as OpenTelemetry's variables ask: off (and free) without an endpoint, on with one;
the W3C context as text, and the ids on log lines."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from services.servicekit.tracing import (
    Tracing,
    add_trace_ids,
    context_from,
    context_from_headers,
    current_context,
    trace_id_in,
)

EXPORTER_THREAD = "OtelBatchSpanRecordProcessor"


def exporter_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == EXPORTER_THREAD]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_SAMPLER",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
    ):
        monkeypatch.delenv(name, raising=False)
    # Nothing listens at the endpoints below: the exporter gives up at once.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.1")


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tracing]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    tracing = Tracing.from_environment("billing")
    yield tracing
    tracing.shutdown()


def test_no_endpoint_no_provider_no_thread_no_span() -> None:
    before = len(exporter_threads())
    tracing = Tracing.from_environment("billing")

    assert not tracing.enabled
    assert len(exporter_threads()) == before
    with tracing.tracer("test").start_as_current_span("work") as span:
        assert not span.is_recording()
        assert current_context() == (None, None)


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_an_endpoint_turns_tracing_on_with_one_exporter_thread(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:9/v1/traces")
    before = len(exporter_threads())
    tracing = Tracing.from_environment("billing")
    try:
        assert tracing.enabled
        assert len(exporter_threads()) == before + 1
        with tracing.tracer("test").start_as_current_span("work") as span:
            assert span.is_recording()
    finally:
        tracing.shutdown()
    assert len(exporter_threads()) == before


@pytest.mark.parametrize(
    ("variable", "value"), [("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "none")]
)
def test_the_sdks_own_switches_turn_it_off(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv(variable, value)
    assert not Tracing.from_environment("billing").enabled


def service_name(tracing: Tracing) -> object:
    with tracing.tracer("test").start_as_current_span("work") as span:
        return span.resource.attributes["service.name"]  # type: ignore[attr-defined]


def test_the_service_is_named_after_itself(traced: Tracing) -> None:
    assert service_name(traced) == "billing"


def test_otel_service_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-eu")
    tracing = Tracing.from_environment("billing")
    try:
        assert service_name(tracing) == "billing-eu"
    finally:
        tracing.shutdown()


def test_the_sampler_is_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    tracing = Tracing.from_environment("billing")
    try:
        with tracing.tracer("test").start_as_current_span("work") as span:
            assert not span.is_recording()
    finally:
        tracing.shutdown()


def test_a_batch_may_link_more_messages_than_the_sdks_default(traced: Tracing) -> None:
    with traced.tracer("test").start_as_current_span("parent") as parent:
        links = [trace.Link(parent.get_span_context())] * 500
        with traced.tracer("test").start_as_current_span("batch", links=links) as batch:
            assert len(batch.links) == 500  # type: ignore[attr-defined]


def test_the_context_goes_out_as_text_and_comes_back() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        traceparent, tracestate = current_context()
    ids = request.get_span_context()
    assert traceparent is not None
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, trace_id, span_id) == ("00", f"{ids.trace_id:032x}", f"{ids.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
    assert tracestate is None

    for context in (
        context_from(traceparent),
        context_from_headers({"traceparent": traceparent.encode()}),  # as AMQP may deliver it
    ):
        assert context is not None
        parent = trace.get_current_span(context).get_span_context()
        assert (parent.trace_id, parent.span_id) == (ids.trace_id, ids.span_id)
    assert context_from(None) is None
    assert context_from("not a traceparent") is None
    assert context_from_headers({}) is None


def test_an_unsampled_context_still_travels() -> None:
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with tracer.start_as_current_span("request"):
        traceparent, _ = current_context()
    assert traceparent is not None
    assert not int(traceparent.split("-")[3], 16) & 1  # not sampled, and said so


def test_log_lines_carry_the_spans_ids() -> None:
    assert add_trace_ids(None, "info", {"event": "outside"}) == {"event": "outside"}
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        line = add_trace_ids(None, "info", {"event": "inside"})
    ids = span.get_span_context()
    assert line["trace_id"] == f"{ids.trace_id:032x}"
    assert line["span_id"] == f"{ids.span_id:016x}"


def test_a_messages_log_lines_name_its_trace() -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_in({"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}) == trace_id
    assert trace_id_in({"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01".encode()}) == trace_id
    assert trace_id_in({"traceparent": "garbage"}) is None
    assert trace_id_in({}) is None
    assert trace_id_in(None) is None
