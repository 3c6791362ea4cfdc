"""Transactional outbox: events written with the business row, published by a relay.

A service writes its business row and the event in one statement (`write_with_event`),
or adds an event inside its own transaction (`enqueue`). The relay wakes at once on the
NOTIFY that the commit delivers, and sweeps on a timer as well; replicas share
the table with `FOR UPDATE SKIP LOCKED`. A row is deleted only after the broker
confirmed it, so a crash between publish and delete publishes again: billing
absorbs duplicates by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from faststream.rabbit import RabbitBroker
from opentelemetry.trace import SpanKind

from contracts.events import Event
from contracts.topology import Topology
from services.servicekit.db import Connection
from services.servicekit.metrics import (
    EVENTS_PUBLISH_FAILED,
    EVENTS_PUBLISHED,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
)
from services.servicekit.migrations import MigrationSet
from services.servicekit.tracing import (
    TRACEPARENT,
    TRACESTATE,
    Tracing,
    context_from,
    current_context,
    inject_into,
)

log = structlog.get_logger(__name__)

MIGRATIONS = MigrationSet("outbox", Path(__file__).parent / "migrations" / "outbox")
CHANNEL = "outbox"
# Longest pause between attempts while the broker is away: events go out soon after it is back.
MAX_RETRY_DELAY = 2.0

# Add an event; the NOTIFY is delivered when the caller's transaction commits.
ENQUEUE = """
WITH added AS (
    INSERT INTO outbox (event_id, routing_key, payload, correlation_id, traceparent, tracestate)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING id
)
SELECT pg_notify('outbox', '') FROM added
"""

# The business row and its event in one statement, so one round trip and atomic without
# an explicit transaction. `written` is the caller's data-modifying statement with its own
# parameters; the event's six follow them. The event is added only if it returned a row.
# `ahead`: the caller's other statements, as named WITH items `written` may read (a data-
# modifying statement may only stand at the top level, never inside `written`).
WITH_EVENT = """
WITH {ahead}written AS ({written}),
added AS (
    INSERT INTO outbox (event_id, routing_key, payload, correlation_id, traceparent, tracestate)
    SELECT ${e1}::uuid, ${e2}::text, ${e3}::jsonb, ${e4}::text, ${e5}::text, ${e6}::text
    FROM written
    RETURNING pg_notify('outbox', '')
)
SELECT written.*, (SELECT count(*) FROM added) AS events_added FROM written
"""

# Several events at once (a batch's), in one statement; payloads travel as JSON text, so
# any connection can write them, with or without a JSON codec.
ENQUEUE_MANY = """
WITH added AS (
    INSERT INTO outbox (event_id, routing_key, payload, correlation_id, traceparent, tracestate)
    SELECT event_id, routing_key, payload::jsonb, $4::text, $5::text, $6::text
    FROM unnest($1::uuid[], $2::text[], $3::text[]) AS e(event_id, routing_key, payload)
    RETURNING id
)
SELECT pg_notify('outbox', '') WHERE EXISTS (SELECT FROM added)
"""

PARAMETER = re.compile(r"\$(\d+)")

# Claim the oldest unpublished events; rows another relay holds are skipped.
CLAIM = """
SELECT id, event_id, routing_key, payload::text AS payload, correlation_id,
       traceparent, tracestate
FROM outbox
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""

# Forget what the broker confirmed.
DELETE_SENT = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"

# Remember why publishing failed, for operators.
RECORD_FAILURE = """
UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1::bigint[])
"""

# Size and age of the backlog, for metrics.
BACKLOG = """
SELECT count(*) AS backlog,
       COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0)::float8 AS oldest
FROM outbox
"""


async def enqueue(conn: Connection, event: Event, *, correlation_id: str | None = None) -> None:
    await conn.execute(
        ENQUEUE,
        event.event_id,
        event.routing_key,
        event.model_dump(mode="json", by_alias=True),
        correlation_id,
        *current_context(),
    )


async def enqueue_many(
    conn: Connection, events: Sequence[Event], *, correlation_id: str | None = None
) -> None:
    if not events:
        return
    await conn.execute(
        ENQUEUE_MANY,
        [event.event_id for event in events],
        [event.routing_key for event in events],
        [event.to_json().decode() for event in events],
        correlation_id,
        *current_context(),
    )


async def write_with_event(
    conn: Connection,
    written: str,
    arguments: Sequence[object],
    event: Event,
    *,
    correlation_id: str | None = None,
    ahead: str = "",
) -> asyncpg.Record | None:
    """Run `written` with `arguments` ($1 to $n) and add `event` if it returned a row.

    One statement: the row and its event are written together or not at all. The
    row `written` returned is returned (with `events_added`), or None. `ahead` holds
    WITH items (`name AS (...), ...`) run in the same statement, with the same arguments.
    """
    row: asyncpg.Record | None = await conn.fetchrow(
        _composed(written, len(arguments), ahead),
        *arguments,
        event.event_id,
        event.routing_key,
        event.model_dump(mode="json", by_alias=True),
        correlation_id,
        *current_context(),
    )
    return row


@functools.lru_cache(maxsize=64)
def _composed(written: str, count: int, ahead: str = "") -> str:
    used = {int(number) for number in PARAMETER.findall(ahead + written)}
    if used != set(range(1, count + 1)):
        raise ValueError(
            f"the statement uses parameters {sorted(used)} but {count} arguments were given"
        )
    first = count + 1
    return WITH_EVENT.format(
        ahead=f"{ahead.strip()},\n" if ahead.strip() else "",
        written=written,
        e1=first,
        e2=first + 1,
        e3=first + 2,
        e4=first + 3,
        e5=first + 4,
        e6=first + 5,
    )


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: UUID
    routing_key: str
    payload: str
    correlation_id: str | None
    # The W3C context of the request that wrote the event, carried on in its headers.
    traceparent: str | None = None
    tracestate: str | None = None


def publish_attributes(exchange: str, row: OutboxRow) -> dict[str, str]:
    """A relay publish's span attributes, as OpenTelemetry's messaging conventions name them."""
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": row.routing_key,
        "messaging.message.id": str(row.event_id),
    }
    if row.correlation_id:
        attributes["messaging.message.conversation_id"] = row.correlation_id
    return attributes


def stored_headers(row: OutboxRow) -> dict[str, Any] | None:
    """The row's stored trace context as message headers, as it was written."""
    if not row.traceparent:
        return None
    headers: dict[str, Any] = {TRACEPARENT: row.traceparent}
    if row.tracestate:
        headers[TRACESTATE] = row.tracestate
    return headers


class OutboxRelay:
    """Publishes outbox rows with confirms; one per process, any number of processes."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: RabbitBroker,
        topology: Topology,
        *,
        listen_dsn: str,
        batch_size: int = 200,
        sweep_interval: float = 1.0,
        publish_timeout: float = 10.0,
        tracing: Tracing | None = None,
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._exchange = topology.exchange()
        self._listen_dsn = listen_dsn
        self._batch_size = batch_size
        self._sweep_interval = sweep_interval
        self._publish_timeout = publish_timeout
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        tracing = tracing or Tracing()
        self._tracer = tracing.tracer(__name__) if tracing.enabled else None

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="outbox-listen"),
            asyncio.create_task(self._relay(), name="outbox-relay"),
        ]

    async def stop(self, *, drain_timeout: float = 5.0) -> None:
        """Let the batch in hand finish, then publish what is left if the broker lets us.

        The relay is not cancelled mid-batch: a batch published but not yet deleted
        would be published again (billing absorbs it, but a clean stop need not).
        """
        self._stopping = True
        self._wake.set()
        listen, relay = self._tasks or (None, None)
        if listen is not None:
            listen.cancel()
        for task in (listen, relay):
            if task is None:
                continue
            try:
                async with asyncio.timeout(drain_timeout):
                    await task
            except (asyncio.CancelledError, TimeoutError):
                pass
        self._tasks = []
        with contextlib.suppress(Exception):
            async with asyncio.timeout(drain_timeout):
                while await self.publish_batch() >= self._batch_size:
                    pass

    def wake(self) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        """Keep a LISTEN connection; if it drops, the timer sweep covers the gap."""
        while True:
            conn: Connection | None = None
            try:
                conn = await asyncpg.connect(self._listen_dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, lambda *_args: self._wake.set())
                self._wake.set()  # events may have arrived while we were not listening
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox listen connection failed", error=str(exc))
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(self._sweep_interval)

    async def _relay(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._sweep_interval
        observed_at = 0.0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sweep_interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            failed = False
            try:
                while await self.publish_batch() >= self._batch_size:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay could not publish, will retry", error=str(exc))
                failed = True
            # By the clock, not by timer sweeps: under steady load, NOTIFYs wake the
            # relay before any sweep is due, and that is when the backlog matters.
            if loop.time() - observed_at >= self._sweep_interval:
                await self._observe_backlog()
                observed_at = loop.time()
            if failed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
            else:
                delay = self._sweep_interval

    async def publish_batch(self) -> int:
        """Publish one batch; return how many rows were confirmed."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = [OutboxRow(**dict(row)) for row in await conn.fetch(CLAIM, self._batch_size)]
            if not rows:
                return 0
            outcomes = await asyncio.gather(
                *(self._publish(row) for row in rows), return_exceptions=True
            )
            sent = [row for row, outcome in zip(rows, outcomes, strict=True) if outcome is None]
            failed = [
                (row, outcome)
                for row, outcome in zip(rows, outcomes, strict=True)
                if outcome is not None
            ]
            await self.mark_sent(conn, [row.id for row in sent])
            if failed:
                first_error = repr(failed[0][1])[:500]
                await conn.execute(RECORD_FAILURE, [row.id for row, _ in failed], first_error)
        for row in sent:
            EVENTS_PUBLISHED.labels(row.routing_key).inc()
        for row, _ in failed:
            EVENTS_PUBLISH_FAILED.labels(row.routing_key).inc()
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(rows)} events not confirmed: {first_error}")
        return len(sent)

    async def mark_sent(self, conn: Connection, ids: list[int]) -> None:
        if ids:
            await conn.execute(DELETE_SENT, ids)

    async def _publish(self, row: OutboxRow) -> None:
        if self._tracer is None:
            # Not traced here; the request's context still travels on to the consumer.
            await self._send(row, stored_headers(row))
            return
        with self._tracer.start_as_current_span(
            f"publish {self._exchange.name}",
            context=context_from(row.traceparent, row.tracestate),
            kind=SpanKind.PRODUCER,
            attributes=publish_attributes(self._exchange.name, row),
        ):
            headers: dict[str, Any] = {}
            inject_into(headers)
            await self._send(row, headers)

    async def _send(self, row: OutboxRow, headers: dict[str, Any] | None) -> None:
        async with asyncio.timeout(self._publish_timeout):
            await self._broker.publish(
                row.payload.encode(),
                exchange=self._exchange,
                routing_key=row.routing_key,
                persist=True,
                mandatory=True,
                message_id=str(row.event_id),
                correlation_id=row.correlation_id or str(row.event_id),
                message_type=row.routing_key,
                content_type="application/json",
                headers=headers,
                timeout=self._publish_timeout,
            )

    async def _observe_backlog(self) -> None:
        try:
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow(BACKLOG)
        except Exception:
            return  # the database is away; the gauges keep their last value
        if row is not None:
            OUTBOX_BACKLOG.set(row["backlog"])
            OUTBOX_OLDEST_AGE.set(row["oldest"])
