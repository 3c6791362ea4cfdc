"""A batch's span: linking every message, the child of its message when it holds one."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from services.billing.ledger.spans import LedgerSpans, batch_attributes, batch_parent

QUEUE = "billing.usage"


def published(number: int) -> SpanContext:
    return SpanContext(trace_id=number, span_id=number, is_remote=True, trace_flags=TraceFlags(1))


def spans() -> tuple[LedgerSpans, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return LedgerSpans(provider.get_tracer("test"), QUEUE), exporter


def test_a_batch_of_one_continues_its_messages_trace() -> None:
    parent = trace.get_current_span(batch_parent([published(7)])).get_span_context()
    assert (parent.trace_id, parent.span_id) == (7, 7)
    assert not trace.get_current_span(batch_parent([published(7), published(8)])).is_recording()
    assert not trace.get_current_span(batch_parent([])).get_span_context().is_valid


def test_a_batch_links_every_message_it_holds_and_counts_them_all() -> None:
    ledger, exporter = spans()
    with ledger.batch([published(1), None, published(2)]):  # one message came untraced
        pass
    (span,) = exporter.get_finished_spans()
    assert span.name == f"process {QUEUE}"
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is None  # many traces: a trace of its own
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
        (1, 1),
        (2, 2),
    ]
    assert dict(span.attributes or {}) == batch_attributes(QUEUE, 3)
    assert (span.attributes or {})["messaging.batch.message_count"] == 3


def test_a_lone_message_is_recorded_in_its_own_trace() -> None:
    ledger, exporter = spans()
    with ledger.batch([published(5)]):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is not None
    assert (span.context.trace_id, span.parent.span_id) == (5, 5)
    assert len(span.links) == 1


def test_tracing_off_makes_no_span_and_reads_no_header() -> None:
    ledger = LedgerSpans(None, QUEUE)
    with ledger.batch([published(1)]):
        assert not trace.get_current_span().get_span_context().is_valid
    assert ledger.context_of(object()) is None  # type: ignore[arg-type]  # never looked at
