"""What the fault tests share: make and publish many events, check the ledger, report figures.

Every fault test ends with `ledger(...)`: each event sent has exactly one usage
row, and there is no row for an event that was not sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from typing import Any, Protocol
from uuid import UUID

import aio_pika
import asyncpg

from contracts.events import Event, QuestionsGenerated
from contracts.topology import Topology
from tests.support.broker import declare_topology_at
from tests.support.env import RABBITMQ_URL
from tests.support.events import generated
from tests.support.processes import ServiceProcess


def many_generated(company: UUID, count: int) -> list[QuestionsGenerated]:
    return [generated(company) for _ in range(count)]


def message_of(event: Event) -> aio_pika.Message:
    return aio_pika.Message(
        event.to_json(),
        content_type="application/json",
        message_id=str(event.event_id),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


class Publisher:
    """One connection and one confirming channel, as a relay publishes."""

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self.published = 0

    async def __aenter__(self) -> Publisher:
        self._connection = await aio_pika.connect(RABBITMQ_URL)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.get_exchange(self._topology.exchange_name)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._connection is not None
        await self._connection.close()

    async def publish(self, events: Iterable[Event], *, window: int = 200) -> None:
        """Publish in order, up to `window` confirms awaited at once; counts what was confirmed."""
        assert self._exchange is not None
        exchange = self._exchange
        pending = list(events)
        for start in range(0, len(pending), window):
            chunk = pending[start : start + window]
            await asyncio.gather(
                *(
                    exchange.publish(
                        message_of(event), routing_key=event.routing_key, mandatory=True
                    )
                    for event in chunk
                )
            )
            self.published += len(chunk)


async def publish_all(topology: Topology, events: Iterable[Event]) -> None:
    async with Publisher(topology) as publisher:
        await publisher.publish(events)


async def declare(topology: Topology) -> None:
    """Declare the topology as the services do (the `prefix` fixture deletes it after)."""
    await declare_topology_at(RABBITMQ_URL, topology)


async def count_rows(dsn: str, company: UUID | None = None) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        if company is None:
            count: int = await conn.fetchval("SELECT count(*) FROM question_generation_usage")
        else:
            count = await conn.fetchval(
                "SELECT count(*) FROM question_generation_usage WHERE company_id = $1", company
            )
        return count
    finally:
        await conn.close()


async def queue_counts(name: str) -> tuple[int, int]:
    """(ready messages, consumers) of a queue, as the broker counts them."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)


class StartBilling(Protocol):
    """The `start_billing` fixture: billing on the test's database and topology."""

    def __call__(
        self,
        *,
        database_url: str | None = None,
        rabbitmq_url: str = RABBITMQ_URL,
        extra_env: Mapping[str, str] | None = None,
        wait_ready: bool = True,
    ) -> AbstractAsyncContextManager[ServiceProcess]: ...


async def leftovers(topology: Topology) -> tuple[int, int]:
    """(dead-lettered, still queued) messages of billing once a test is done."""
    dlq, _ = await queue_counts(topology.billing_dlq_name)
    left, _ = await queue_counts(topology.billing_queue_name)
    return dlq, left


@dataclass
class Ledger:
    """What the usage table holds against what was sent."""

    sent: int
    rows: int
    duplicates: int  # rows beyond the first for one event
    lost: int  # events sent with no row
    extra: int  # rows of events never sent

    @property
    def exact(self) -> bool:
        return self.rows == self.sent and self.duplicates == self.lost == self.extra == 0


async def ledger(
    dsn: str,
    sent: Iterable[UUID],
    *,
    table: str = "question_generation_usage",
    column: str = "event_id",
) -> Ledger:
    """Compare the ids in `table.column` with `sent` (by default: usage rows by event)."""
    expected = set(sent)
    conn = await asyncpg.connect(dsn)
    try:
        found = [row[0] for row in await conn.fetch(f"SELECT {column} FROM {table}")]
    finally:
        await conn.close()
    distinct = set(found)
    return Ledger(
        sent=len(expected),
        rows=len(found),
        duplicates=len(found) - len(distinct),
        lost=len(expected - distinct),
        extra=len(distinct - expected),
    )


async def settled_ledger(
    dsn: str, sent: list[UUID], *, timeout: float, table: str = "question_generation_usage"
) -> Ledger:
    """The ledger once every sent event has a row (or at the deadline), after a short settle.

    The settle catches a late duplicate or extra row that a bare count would miss.
    """
    deadline = time.monotonic() + timeout
    while True:
        current = await ledger(dsn, sent, table=table)
        if current.lost == 0 or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    return await ledger(dsn, sent, table=table)


class Figures:
    """What a test saw, printed as one JSON line (`FIGURES {...}`) for the report."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[str, Any] = {}
        self._started = time.monotonic()

    def record(self, **values: Any) -> None:
        self.values.update(values)

    def ledger(self, result: Ledger, prefix: str = "") -> None:
        self.values.update({f"{prefix}{key}": value for key, value in asdict(result).items()})

    def emit(self) -> None:
        self.values["elapsed_s"] = round(time.monotonic() - self._started, 2)
        print(f"FIGURES {json.dumps({'test': self.name, **self.values}, default=str)}")
