"""Poison among good events, and a failed good event replayed from the DLQ after a fix."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import aio_pika
import asyncpg
import pytest
from prometheus_client import REGISTRY

from contracts.events import JobCreated, QuestionsGenerated
from contracts.topology import DELIVERY_LIMIT, Topology
from services.billing.config import Settings
from services.billing.dlq import replay
from services.billing.ledger.messages import ATTEMPTS, DETAIL, FAILURE_HEADERS, REASON
from tests.chaos.harness import (
    Figures,
    declare,
    ledger,
    publish_all,
    queue_counts,
    settled_ledger,
)
from tests.support.auth import TEST_SECRET
from tests.support.broker import drain
from tests.support.databases import ServiceDatabases
from tests.support.env import RABBITMQ_URL
from tests.support.events import generated
from tests.support.prices import price, set_price
from tests.support.processes import run_module
from tests.support.stack import start_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.chaos


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def poison_kinds(company: UUID) -> dict[str, tuple[bytes, str | None]]:
    """Name -> (body, routing key or None for "straight to the queue, no type")."""
    good = json.loads(generated(company).to_json())
    missing = {key: value for key, value in good.items() if key != "companyId"}
    return {
        "not-json": (b"{not json", QuestionsGenerated.routing_key),
        "empty": (b"", QuestionsGenerated.routing_key),
        "wrong-schema": (b'{"hello": "world"}', QuestionsGenerated.routing_key),
        "missing-field": (json.dumps(missing).encode(), QuestionsGenerated.routing_key),
        "wrong-type": (
            json.dumps({**good, "questionCount": "ten"}).encode(),
            QuestionsGenerated.routing_key,
        ),
        "job-without-job-id": (
            json.dumps({**good, "jobId": None}).encode(),
            JobCreated.routing_key,
        ),
        "unknown-type": (json.dumps(good).encode(), "questions.generated.v9"),
        "no-type": (json.dumps(good).encode(), None),
    }


async def publish_poison(topology: Topology, name: str, body: bytes, key: str | None) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        message = aio_pika.Message(
            body,
            content_type="application/json",
            message_id=f"poison-{name}",
            type=key,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        if key in (QuestionsGenerated.routing_key, JobCreated.routing_key):
            exchange = await channel.get_exchange(topology.exchange_name)
            await exchange.publish(message, routing_key=key, mandatory=True)
        else:  # no binding routes an unknown key to billing: only a direct publish gets there
            await channel.default_exchange.publish(
                message, routing_key=topology.billing_queue_name, mandatory=True
            )


async def test_poison_goes_to_the_dlq_and_good_events_are_billed(
    dbs: ServiceDatabases, prefix: str, company: UUID, figures: Figures
) -> None:
    kinds = poison_kinds(company)
    good = [generated(company) for _ in range(40)]
    async with start_stack(dbs, prefix, services=("billing",)) as stack:
        topology = stack.topology
        for index, (name, (body, key)) in enumerate(kinds.items()):
            await publish_all(topology, good[index * 5 : index * 5 + 5])
            await publish_poison(topology, name, body, key)
        result = await settled_ledger(dbs.billing, [e.event_id for e in good], timeout=30)
        await eventually(
            lambda: queue_counts(topology.billing_dlq_name),
            until=lambda counts: counts[0] == len(kinds),
        )
        # Still alive and consuming: a good event after all that is billed.
        late = generated(company)
        await publish_all(topology, [late])
        after = await settled_ledger(dbs.billing, [e.event_id for e in [*good, late]], timeout=30)
        ready = await stack.billing.get("/readyz")
        assert ready.status_code == 200, ready.text
        dead = await drain(topology.billing_dlq_name)
        left, _ = await queue_counts(topology.billing_queue_name)

    reasons = {text(m.message_id): text((m.headers or {}).get(REASON)) for m in dead}
    details = {text(m.message_id): text((m.headers or {}).get(DETAIL, "")) for m in dead}
    figures.ledger(after)
    figures.record(poison=len(kinds), dlq=len(dead), reasons=sorted(set(reasons.values())))
    assert result.exact, result
    assert after.exact, after
    assert reasons == {f"poison-{name}": "poison" for name in kinds}
    assert all(details.values()), details
    assert "unknown event type" in details["poison-unknown-type"]
    assert "companyId" in details["poison-missing-field"]
    assert left == 0


def counted(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_a_dead_letter_refused_on_a_live_channel_closes_nothing(
    dbs: ServiceDatabases, prefix: str, company: UUID, figures: Figures
) -> None:
    """A poison whose dead letter is unroutable goes round, nacked each time, on one channel.

    RabbitMQ closes a channel whose multiple-ack names a tag no longer outstanding (one
    nacked): every message in hand would come round again, and again at the next nack.
    """
    good = [generated(company) for _ in range(40)]
    async with (
        start_stack(dbs, prefix, services=("billing",)) as stack,
        DlqBinding(stack.topology) as binding,
    ):
        topology = stack.topology
        runtime = stack.apps["billing"].state.runtime
        # The queue object the consumer registered on, and so its channel.
        queue = await runtime.broker.declare_queue(topology.billing_queue())
        closed: list[object] = []
        queue.channel.close_callbacks.add(lambda _, exc=None: closed.append(exc))
        returned_before = counted("billing_messages_returned_total")
        duplicates_before = counted("billing_events_duplicate_total")

        await binding.unbind()  # a dead letter is now returned to billing: not confirmed
        await publish_all(topology, good[:20])
        await publish_poison(topology, "refused", b"{not json", QuestionsGenerated.routing_key)
        await publish_all(topology, good[20:])

        async def returned_since() -> float:
            return counted("billing_messages_returned_total") - returned_before

        # A few rounds, well under the queue's delivery limit (RabbitMQ before 4.3 counts nacks
        # toward it, and would dead-letter the message itself).
        await eventually(
            returned_since,
            until=lambda returned: returned >= 3 or bool(closed),
            timeout=15,
            interval=0.005,
        )
        assert closed == [], f"the consumer's channel was closed: {closed[:1]}"
        await binding.bind()  # fixed: the next round reaches the DLQ
        returned = await returned_since()
        await eventually(
            lambda: queue_counts(topology.billing_dlq_name), until=lambda counts: counts[0] == 1
        )
        result = await settled_ledger(dbs.billing, [e.event_id for e in good], timeout=30)
        duplicates = counted("billing_events_duplicate_total") - duplicates_before
        dead = await drain(topology.billing_dlq_name)
        left, _ = await queue_counts(topology.billing_queue_name)
        ready = await stack.billing.get("/readyz")
        closed_while_running = list(closed)  # billing's own stop closes it next

    figures.ledger(result)
    figures.record(
        returned=returned, channel_closed=len(closed_while_running), redelivered_recorded=duplicates
    )
    assert closed_while_running == []
    assert result.exact, result
    assert duplicates == 0  # no recorded message came round again
    assert [text(m.message_id) for m in dead] == ["poison-refused"]  # there once, not lost
    assert text((dead[0].headers or {}).get(REASON)) == "poison"
    assert left == 0
    assert ready.status_code == 200, ready.text


class DlqBinding:
    """The DLQ's binding to its dead-letter exchange, cut and restored on a channel of its own
    (opened beforehand: restoring it takes one round trip)."""

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._dlq: aio_pika.abc.AbstractQueue | None = None

    async def __aenter__(self) -> DlqBinding:
        self._connection = await aio_pika.connect(RABBITMQ_URL)
        channel = await self._connection.channel()
        self._dlq = await channel.declare_queue(self._topology.billing_dlq_name, passive=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._connection is not None
        await self._connection.close()

    async def unbind(self) -> None:
        assert self._dlq is not None
        await self._dlq.unbind(self._topology.billing_dlx_name, routing_key="")

    async def bind(self) -> None:
        assert self._dlq is not None
        await self._dlq.bind(self._topology.billing_dlx_name, routing_key="")


async def test_a_cost_too_big_at_the_price_in_force_is_poison_and_the_rest_is_billed(
    dbs: ServiceDatabases, prefix: str, company: UUID, figures: Figures
) -> None:
    """Priced once, by the ledger: an overflow found there goes to the DLQ as poison, alone."""
    # The highest price the API accepts: 50 questions (the most one request asks) still fit
    # the ledger, at 999999.9995; an event of 60 (from a producer that is not ours) does not.
    effective = datetime.now(UTC) + timedelta(seconds=5)
    before = generated(company, questions=50, at=effective - timedelta(minutes=1))
    fits = generated(company, questions=50, at=effective + timedelta(seconds=1))
    overflows = generated(company, questions=60, at=effective + timedelta(seconds=1))
    others = [generated(uuid.uuid4(), questions=50) for _ in range(20)]
    async with start_stack(dbs, prefix, services=("billing",)) as stack:
        topology = stack.topology
        answer = await set_price(stack, company, price(effective, "199999.9999", "0"))
        assert answer.status_code == 201, answer.text
        await publish_all(topology, [*others[:10], before, overflows, fits, *others[10:]])
        billed = [e.event_id for e in [*others, before, fits]]
        result = await settled_ledger(dbs.billing, billed, timeout=30)
        await eventually(
            lambda: queue_counts(topology.billing_dlq_name), until=lambda counts: counts[0] == 1
        )
        dead = await drain(topology.billing_dlq_name)
        left, _ = await queue_counts(topology.billing_queue_name)
        costs = {
            row["event_id"]: row["cost"]
            for row in await stack.fetch(
                dbs.billing,
                "SELECT event_id, cost FROM question_generation_usage WHERE company_id = $1",
                company,
            )
        }

    [message] = dead
    headers = message.headers or {}
    figures.ledger(result)
    figures.record(dlq=len(dead), reason=text(headers.get(REASON)))
    assert result.exact, result  # the overflowing event has no row; every other one has
    assert message.message_id == str(overflows.event_id)
    assert text(headers.get(REASON)) == "poison"
    assert "exceeds 999999.9999" in text(headers.get(DETAIL))
    assert ATTEMPTS not in headers  # dead-lettered at once, never sent round again
    assert costs == {before.event_id: Decimal("0.5000"), fits.event_id: Decimal("999999.9995")}
    assert left == 0


REFUSE = """
CREATE FUNCTION refuse_listed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_id = ANY('{EVENTS}'::uuid[]) THEN
        RAISE EXCEPTION 'usage of % refused (a bug, fixed later)', NEW.event_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_listed BEFORE INSERT ON question_generation_usage
    FOR EACH ROW EXECUTE FUNCTION refuse_listed();
"""

FIX = "DROP TRIGGER refuse_listed ON question_generation_usage; DROP FUNCTION refuse_listed();"


async def execute(dsn: str, script: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(script)
    finally:
        await conn.close()


async def test_failed_event_is_billed_after_replay(
    dbs: ServiceDatabases, prefix: str, company: UUID, figures: Figures
) -> None:
    good = [generated(company) for _ in range(20)]
    doomed = [generated(company) for _ in range(2)]
    env = {
        "RABBITMQ_URL": RABBITMQ_URL,
        "RABBITMQ_TOPOLOGY_PREFIX": prefix,
        "AUTH_JWT_SECRET": TEST_SECRET,
    }
    async with start_stack(
        dbs, prefix, services=("billing",), billing_overrides={"max_failed_attempts": 3}
    ) as stack:
        topology = stack.topology
        await execute(
            dbs.billing, REFUSE.replace("EVENTS", ",".join(str(e.event_id) for e in doomed))
        )
        await publish_all(topology, [*good[:10], doomed[0], *good[10:], doomed[1]])
        before = await settled_ledger(dbs.billing, [e.event_id for e in good], timeout=30)
        await eventually(
            lambda: queue_counts(topology.billing_dlq_name), until=lambda c: c[0] == 2, timeout=30
        )

        await execute(dbs.billing, FIX)
        code, dry = await run_module("services.billing.dlq", "--dry-run", env=env)
        assert code == 0, dry
        assert "would move 2 of 2" in dry, dry
        assert "reason=failed" in dry, dry
        await asyncio.sleep(0.5)
        assert (await queue_counts(topology.billing_dlq_name))[0] == 2
        assert (await ledger(dbs.billing, [e.event_id for e in good])).exact

        code, first = await run_module("services.billing.dlq", "--limit", "1", env=env)
        assert code == 0, first
        assert "moved 1 of 2" in first, first
        await eventually(lambda: ledger(dbs.billing, []), until=lambda led: led.rows == 21)

        code, rest = await run_module("services.billing.dlq", env=env)
        assert code == 0, rest
        assert "moved 1 of 1" in rest, rest
        sent = [e.event_id for e in [*good, *doomed]]
        after = await settled_ledger(dbs.billing, sent, timeout=30)
        dlq, _ = await queue_counts(topology.billing_dlq_name)

    figures.ledger(after)
    figures.record(dead_lettered=2, replayed=2, dlq_after=dlq)
    assert before.lost == 0
    assert before.rows == len(good)
    assert after.exact, after
    assert dlq == 0


async def test_crash_looping_message_reaches_the_dlq_after_the_delivery_limit(
    prefix: str, figures: Figures
) -> None:
    """A worker that dies holding a message, again and again: the broker's backstop."""
    topology = Topology(prefix)
    await declare(topology)
    event = generated(uuid.uuid4())
    await publish_all(topology, [event])
    deliveries = 0
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        for _ in range(DELIVERY_LIMIT + 5):
            channel = await connection.channel()
            queue = await channel.declare_queue(topology.billing_queue_name, passive=True)
            message = await queue.get(no_ack=False, fail=False, timeout=5)
            if message is None:
                await channel.close()
                break
            deliveries += 1
            await channel.close()  # as a crash does: unacknowledged, back to the queue
    await eventually(
        lambda: queue_counts(topology.billing_dlq_name), until=lambda counts: counts[0] == 1
    )
    dead = await peek_one(topology.billing_dlq_name)
    assert text((dead.headers or {}).get("x-first-death-reason")) == "delivery_limit"
    assert dead.type is None  # the broker dead-lettered it: only its routing key tells the type

    # Replayed (nothing consumes here, so the copy can be inspected): type restored, past
    # failures forgotten, the same message otherwise.
    report = await replay(
        Settings(rabbitmq_url=RABBITMQ_URL, rabbitmq_topology_prefix=prefix), out=io.StringIO()
    )
    replayed = await drain(topology.billing_queue_name)
    dlq, _ = await queue_counts(topology.billing_dlq_name)
    figures.record(deliveries=deliveries, dead_lettered=1, replayed=report.moved, dlq_after=dlq)
    assert deliveries == DELIVERY_LIMIT + 1
    assert report.moved == 1
    assert dlq == 0
    assert [m.message_id for m in replayed] == [str(event.event_id)]
    assert replayed[0].type == QuestionsGenerated.routing_key
    assert replayed[0].body == event.to_json()
    headers = dict(replayed[0].headers or {})
    assert headers.pop("x-delivery-count", 0) == 0  # the queue counts afresh
    assert not set(headers) & set(FAILURE_HEADERS), headers


async def peek_one(name: str) -> aio_pika.abc.AbstractIncomingMessage:
    """The first message of a queue, left in it."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        message = await queue.get(no_ack=False, timeout=5)
        await message.nack(requeue=True)
        return message
