"""Billing's spans: one per committed batch, linking every message it recorded.

A message's context is the relay's publish span, from its `traceparent` header.
A batch gathers messages of many traces, so its span links each of them, as
OpenTelemetry's messaging conventions do for batches; a batch of one message
(every message, when traffic is light) is also the child of that message's
publish, so the generation's trace shows billing recording it.

One span per batch, not one per message: a span per message cost billing about a
third of its throughput (docs/benchmarks.md, "Tracing overhead"); a link costs a
few microseconds. With tracing off, nothing here makes a span or reads a header.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind
from opentelemetry.util.types import AttributeValue

from services.servicekit.tracing import context_from_headers


def batch_attributes(queue: str, messages: int) -> dict[str, AttributeValue]:
    """A batch's span attributes, as OpenTelemetry's messaging conventions name them."""
    return {
        "messaging.system": "rabbitmq",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.batch.message_count": messages,
    }


def batch_parent(contexts: Sequence[SpanContext]) -> Context:
    """A batch of one continues its message's trace; a larger one starts a trace of its own."""
    if len(contexts) == 1:
        return trace.set_span_in_context(NonRecordingSpan(contexts[0]))
    return Context()


class LedgerSpans:
    """The consumer's spans on billing's tracer; `None`: tracing is off."""

    def __init__(self, tracer: trace.Tracer | None, queue: str) -> None:
        self._tracer = tracer
        self._queue = queue

    def context_of(self, message: AbstractIncomingMessage) -> SpanContext | None:
        """The span that published the message, for its batch to link to."""
        if self._tracer is None:
            return None
        context = context_from_headers(message.headers)
        if context is None:
            return None
        return trace.get_current_span(context).get_span_context()

    @contextlib.contextmanager
    def batch(self, contexts: Sequence[SpanContext | None]) -> Iterator[None]:
        """The span of one batch's commit, linking every message it holds."""
        if self._tracer is None:
            yield
            return
        known = [context for context in contexts if context is not None and context.is_valid]
        with self._tracer.start_as_current_span(
            f"process {self._queue}",
            context=batch_parent(known),
            kind=SpanKind.CONSUMER,
            links=[Link(context) for context in known],
            attributes=batch_attributes(self._queue, len(contexts)),
        ):
            yield
