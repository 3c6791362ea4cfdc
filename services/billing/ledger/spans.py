"""Billing's spans: one per message recorded, in the trace of the request that wrote its
event, and one per committed batch, linking every message it recorded.

A message's span is the child of the relay's publish span, whose context came in the
message's `traceparent` header; a batch gathers messages of many traces, so its span
starts a trace of its own and links each of them (OpenTelemetry's messaging conventions
for batches). With tracing off, nothing here makes a span or reads a header.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind
from opentelemetry.util.types import AttributeValue

from services.servicekit.tracing import context_from_headers


def message_attributes(
    queue: str, routing_key: str, message: AbstractIncomingMessage
) -> dict[str, AttributeValue]:
    """A message's span attributes, as OpenTelemetry's messaging conventions name them."""
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.rabbitmq.destination.routing_key": routing_key,
    }
    if message.message_id:
        attributes["messaging.message.id"] = message.message_id
    if message.correlation_id:
        attributes["messaging.message.conversation_id"] = message.correlation_id
    return attributes


def batch_links(contexts: Sequence[SpanContext | None]) -> list[Link]:
    """One link per message span of the batch (a message traced nowhere has none)."""
    return [Link(context) for context in contexts if context is not None and context.is_valid]


class LedgerSpans:
    """The consumer's spans on billing's tracer; `None`: tracing is off."""

    def __init__(self, tracer: trace.Tracer | None, queue: str) -> None:
        self._tracer = tracer
        self._queue = queue

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def message(
        self, routing_key: str, message: AbstractIncomingMessage
    ) -> AbstractContextManager[object]:
        """The span of recording one message, current while it is handled."""
        if self._tracer is None:
            return contextlib.nullcontext()
        return self._tracer.start_as_current_span(
            f"process {self._queue}",
            context=context_from_headers(message.headers),
            kind=SpanKind.CONSUMER,
            attributes=message_attributes(self._queue, routing_key, message),
        )

    def current(self) -> SpanContext | None:
        """The message span in hand, for its batch to link to."""
        if self._tracer is None:
            return None
        return trace.get_current_span().get_span_context()

    @contextlib.contextmanager
    def batch(self, contexts: Sequence[SpanContext | None]) -> Iterator[None]:
        """The span of one batch's commit, a root linking every message it holds."""
        if self._tracer is None:
            yield
            return
        with self._tracer.start_as_current_span(
            "record batch",
            context=Context(),
            kind=SpanKind.INTERNAL,
            links=batch_links(contexts),
            attributes={"messaging.batch.message_count": len(contexts)},
        ):
            yield
