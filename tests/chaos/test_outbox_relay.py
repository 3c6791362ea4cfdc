"""The outbox relay: a crash between publish and mark-sent, and replicas side by side."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import aio_pika
import asyncpg
import pytest

from contracts.events import QuestionsGenerated
from contracts.topology import Topology
from services.question_gen.main import create_app as create_questions
from services.servicekit import outbox
from services.servicekit.db import Connection
from services.servicekit.outbox import OutboxRelay
from tests.chaos.harness import Figures, queue_counts, settled_ledger
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.env import RABBITMQ_URL
from tests.support.events import generated
from tests.support.stack import question_settings, running, start_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.chaos


class Tap:
    """A queue of the test's own bound to the generations' key: counts what was published.

    Billing publishes events of its own (spend, prices) through its own relay: not counted.
    """

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._name = f"{topology.prefix}tap.{uuid.uuid4().hex[:6]}"
        self.seen: Counter[str] = Counter()

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[Tap]:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(self._topology.exchange_name)
            queue = await channel.declare_queue(self._name, exclusive=True)
            await queue.bind(exchange, routing_key=QuestionsGenerated.routing_key)

            async def count(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                self.seen[str(message.message_id)] += 1

            await queue.consume(count, no_ack=True)
            yield self

    @property
    def publishes(self) -> int:
        return sum(self.seen.values())


async def test_crash_between_publish_and_mark_sent_bills_once(
    dbs: ServiceDatabases,
    prefix: str,
    company: UUID,
    monkeypatch: pytest.MonkeyPatch,
    figures: Figures,
) -> None:
    crashes = 0
    mark_sent = OutboxRelay.mark_sent

    async def crash_once(self: OutboxRelay, conn: Connection, ids: list[int]) -> None:
        """The question service's relay crashes once (billing runs a relay of its own)."""
        nonlocal crashes
        if ids and crashes == 0 and self._listen_dsn == dbs.question_gen:
            crashes += 1
            raise ConnectionResetError("relay lost its database before marking events sent")
        await mark_sent(self, conn, ids)

    monkeypatch.setattr(OutboxRelay, "mark_sent", crash_once)
    async with start_stack(dbs, prefix, services=("billing", "question_gen")) as stack:
        tap = Tap(stack.topology)
        async with tap.listening():
            responses = await asyncio.gather(
                *(
                    stack.questions.post(
                        "/api/ai/generate-questions",
                        json={"jobDescription": "Relay", "draftJobId": f"draft-{index}"},
                        headers=bearer(company),
                    )
                    for index in range(20)
                )
            )
            assert [response.status_code for response in responses] == [200] * 20
            sent = [UUID(response.json()["generationId"]) for response in responses]
            result = await settled_ledger(dbs.billing, sent, timeout=30)
            await eventually(lambda: asyncio.sleep(0, not tap.seen.keys() - set(map(str, sent))))
            outbox_left = await stack.fetch(dbs.question_gen, "SELECT count(*) AS n FROM outbox")

    published_twice = sum(1 for count in tap.seen.values() if count > 1)
    dlq, _ = await queue_counts(stack.topology.billing_dlq_name)
    figures.ledger(result)
    figures.record(
        crashes=crashes, publishes=tap.publishes, published_twice=published_twice, dlq=dlq
    )
    assert crashes == 1
    assert set(tap.seen) == {str(event) for event in sent}
    assert published_twice >= 1, "the crash did not cause a second publish: nothing was tested"
    assert result.exact, result
    assert outbox_left[0]["n"] == 0
    assert dlq == 0


async def test_relay_replicas_publish_each_event_once(
    dbs: ServiceDatabases,
    prefix: str,
    company: UUID,
    monkeypatch: pytest.MonkeyPatch,
    figures: Figures,
) -> None:
    by_relay: Counter[int] = Counter()
    publish_batch = OutboxRelay.publish_batch

    async def counted(self: OutboxRelay) -> int:
        sent = await publish_batch(self)
        by_relay[id(self)] += sent
        return sent

    monkeypatch.setattr(OutboxRelay, "publish_batch", counted)
    events = [generated(company) for _ in range(1_000)]
    settings = question_settings(dbs, prefix, outbox_batch_size=25)
    replicas = [create_questions(settings) for _ in range(3)]
    async with start_stack(dbs, prefix, services=("billing",)) as stack:
        tap = Tap(stack.topology)
        async with (
            tap.listening(),
            running(replicas[0], "http://replica-1"),
            running(replicas[1], "http://replica-2"),
            running(replicas[2], "http://replica-3"),
        ):
            pool: asyncpg.Pool = replicas[0].state.runtime.pool
            for start in range(0, len(events), 100):  # ten commits, ten NOTIFYs
                async with pool.acquire() as conn, conn.transaction():
                    for event in events[start : start + 100]:
                        await outbox.enqueue(conn, event)
            sent = [event.event_id for event in events]
            result = await settled_ledger(dbs.billing, sent, timeout=60)
            await eventually(lambda: asyncio.sleep(0, tap.publishes >= len(events)))
            await asyncio.sleep(0.5)

    figures.ledger(result)
    figures.record(publishes=tap.publishes, per_relay=sorted(by_relay.values()))
    assert all(count == 1 for count in tap.seen.values()), "an event was published twice"
    assert tap.publishes == len(events)
    assert len(by_relay) >= 2, "one relay did all the work: the replicas were not side by side"
    assert result.exact, result
