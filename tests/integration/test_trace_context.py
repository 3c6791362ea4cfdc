"""The request's trace context through the outbox: written with the event in the request's
transaction, then put into the AMQP message's headers by the relay, however much later
(the broker may have been away when the request ran). Spans kept by the SDK's in-memory
exporter; the real PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from contracts.topology import Topology
from services.servicekit import db, outbox
from services.servicekit.broker import make_broker
from services.servicekit.outbox import OutboxRelay
from services.servicekit.tracing import Tracing
from tests.support.auth import bearer
from tests.support.broker import declare_topology_at, drain
from tests.support.databases import ServiceDatabases
from tests.support.env import RABBITMQ_URL
from tests.support.events import generated
from tests.support.stack import start_stack
from tests.support.waiting import eventually

INSERT_JOB = "INSERT INTO jobs (id, company_id, title) VALUES ($1, $2, $3) RETURNING id"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
async def pool(dbs: ServiceDatabases) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(dbs.question_gen, min_size=1, max_size=2)
    yield pool
    await pool.close()


def ids(span: Any) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


async def stored(pool: asyncpg.Pool) -> dict[UUID, tuple[str | None, str | None]]:
    rows = await pool.fetch("SELECT event_id, traceparent, tracestate FROM outbox")
    return {row["event_id"]: (row["traceparent"], row["tracestate"]) for row in rows}


async def test_the_outbox_row_carries_the_requests_context(
    pool: asyncpg.Pool, provider: TracerProvider, company: UUID
) -> None:
    alone, first, second, untraced = (generated(company) for _ in range(4))
    with provider.get_tracer("test").start_as_current_span("POST /questions") as request:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, alone)
            await outbox.enqueue_many(conn, [first, second])
    async with pool.acquire() as conn:
        await outbox.enqueue(conn, untraced)

    trace_id, span_id = ids(request)
    rows = await stored(pool)
    for event in (alone, first, second):
        traceparent, tracestate = rows[event.event_id]
        assert traceparent is not None
        assert traceparent.split("-")[1:3] == [trace_id, span_id]
        assert tracestate is None
    assert rows[untraced.event_id] == (None, None)


async def test_the_row_and_its_event_written_together_carry_it(
    dbs: ServiceDatabases, provider: TracerProvider, company: UUID
) -> None:
    pool = await db.create_pool(dbs.jobs, min_size=1, max_size=1)
    try:
        event = generated(company)
        with provider.get_tracer("test").start_as_current_span("POST /jobs") as request:
            async with pool.acquire() as conn:
                written = await outbox.write_with_event(
                    conn, INSERT_JOB, [event.event_id, company, "Engineer"], event
                )
        assert written is not None
        assert written["events_added"] == 1
        traceparent, _ = (await stored(pool))[event.event_id]
    finally:
        await pool.close()
    assert traceparent is not None
    assert traceparent.split("-")[1:3] == list(ids(request))


async def publish_all(
    pool: asyncpg.Pool, dsn: str, topology: Topology, tracing: Tracing | None
) -> None:
    broker = make_broker(RABBITMQ_URL, app_id="test")
    await broker.connect()
    try:
        relay = OutboxRelay(pool, broker, topology, listen_dsn=dsn, tracing=tracing)
        assert await relay.publish_batch() > 0
    finally:
        await broker.stop()


async def test_the_relay_continues_the_trace_after_the_broker_was_away(
    dbs: ServiceDatabases,
    pool: asyncpg.Pool,
    topology: Topology,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    company: UUID,
) -> None:
    # The request commits its event while no broker is there to take it (no relay runs).
    event = generated(company)
    with provider.get_tracer("test").start_as_current_span("POST /questions") as request:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, event, correlation_id="corr-1")
    exporter.clear()

    # Later, the broker is back and a relay (another process, say) publishes it.
    await declare_topology_at(RABBITMQ_URL, topology)
    await publish_all(pool, dbs.question_gen, topology, Tracing(provider))

    (publish,) = exporter.get_finished_spans()
    trace_id, request_span = ids(request)
    assert publish.kind is SpanKind.PRODUCER
    assert publish.name == f"publish {topology.exchange_name}"
    assert publish.parent is not None
    assert f"{publish.parent.span_id:016x}" == request_span
    assert ids(publish)[0] == trace_id
    assert dict(publish.attributes or {}) == {
        "messaging.system": "rabbitmq",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.destination.name": topology.exchange_name,
        "messaging.rabbitmq.destination.routing_key": event.routing_key,
        "messaging.message.id": str(event.event_id),
        "messaging.message.conversation_id": "corr-1",
    }
    (message,) = await drain(topology.billing_queue_name)
    traceparent = str((message.headers or {})["traceparent"])
    assert traceparent.split("-")[1:3] == list(ids(publish))  # the consumer's parent: the publish


async def test_an_untraced_relay_passes_the_stored_context_on_as_written(
    dbs: ServiceDatabases,
    pool: asyncpg.Pool,
    topology: Topology,
    provider: TracerProvider,
    company: UUID,
) -> None:
    event = generated(company)
    with provider.get_tracer("test").start_as_current_span("POST /questions"):
        async with pool.acquire() as conn:
            await outbox.enqueue(conn, event)
    traceparent, _ = (await stored(pool))[event.event_id]

    await declare_topology_at(RABBITMQ_URL, topology)
    await publish_all(pool, dbs.question_gen, topology, tracing=None)

    (message,) = await drain(topology.billing_queue_name)
    assert (message.headers or {})["traceparent"] == traceparent


async def test_no_endpoint_no_thread_no_span_no_context(
    dbs: ServiceDatabases, prefix: str, company: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    async with start_stack(dbs, prefix, services=("question_gen",)) as stack:
        response = await stack.questions.post(
            "/api/ai/generate-questions",
            json={"jobDescription": "Tracing off", "draftJobId": "draft-1"},
            headers=bearer(company),
        )
        assert response.status_code == 200, response.text
        app = stack.apps["question_gen"]
        assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
        assert not [t for t in threading.enumerate() if t.name.startswith("OtelBatch")]
        messages = await eventually(
            lambda: drain(stack.topology.billing_queue_name), until=lambda found: bool(found)
        )
    assert messages
    assert all("traceparent" not in (message.headers or {}) for message in messages)
