"""Every message received is settled exactly once, and acknowledged only once settled.

The consumer runs on fakes of the broker, its channel and the ledger, so that
each outcome of the rule is one test: committed -> acknowledged; poison (found
by parsing, or by the ledger: a cost it cannot hold) -> dead-lettered with its
reason, then acknowledged; failed -> sent round again with its attempts
counted, dead-lettered after the limit; never an acknowledgement covering a
message not yet settled.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from contracts.topology import Topology
from services.billing.ledger.consume import Consumer, SettledTags
from services.billing.ledger.messages import ATTEMPTS, DETAIL, REASON
from services.billing.ledger.record import Recorded, UsageRecorded
from services.billing.ledger.rules import CostOutOfRange, Entry, Placement
from tests.support.events import generated

TOPOLOGY = Topology("unit.")
MAX_FAILED_ATTEMPTS = 3


class FakeChannel:
    """Records the frames a real channel would write, and answers them as RabbitMQ does.

    An acknowledgement naming a tag that is not outstanding (never delivered, or
    already acknowledged or nacked) is PRECONDITION_FAILED "unknown delivery tag":
    RabbitMQ closes the channel, and every message still unacknowledged on it returns
    to the queue.
    """

    def __init__(self) -> None:
        self.is_closed = False
        self.frames: list[tuple[str, int, bool]] = []
        self.outstanding: set[int] = set()
        self.closed_by: int | None = None  # the tag of the acknowledgement that closed it

    def delivered(self, tag: int) -> None:
        self.outstanding.add(tag)

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.frames.append(("ack", delivery_tag, multiple))
        if delivery_tag not in self.outstanding:
            self.is_closed, self.closed_by = True, delivery_tag
            self.outstanding.clear()
            return
        covered = {t for t in self.outstanding if t <= delivery_tag} if multiple else set()
        self.outstanding -= covered | {delivery_tag}

    def nacked(self, tag: int) -> None:
        self.frames.append(("nack", tag, True))
        self.outstanding.discard(tag)


class FakeMessage:
    def __init__(
        self, channel: FakeChannel, tag: int, body: bytes, headers: dict[str, Any]
    ) -> None:
        self.channel = channel
        self.delivery_tag = tag
        self.body = body
        self.headers = headers
        self.routing_key = "questions.generated.v1"
        self.type = None
        self.message_id = str(uuid.uuid4())
        self.correlation_id = None
        self.content_type = "application/json"
        self.redelivered = False
        channel.delivered(tag)

    async def nack(self, requeue: bool = True) -> None:
        assert requeue
        self.channel.nacked(self.delivery_tag)


def event_id(message: FakeMessage) -> uuid.UUID:
    return uuid.UUID(json.loads(message.body)["eventId"])


class FakeQueue:
    def __init__(self, channel: FakeChannel) -> None:
        self.channel = channel
        self.consumers: list[str] = []

    async def consume(self, callback: Any, no_ack: bool) -> str:
        assert not no_ack
        self.consumers.append("ctag")
        return "ctag"

    async def cancel(self, tag: str) -> None:
        self.consumers.remove(tag)


class FakeBroker:
    """Publishes (dead letters, retries) into a list; publishes wait for `release`."""

    def __init__(self, channel: FakeChannel) -> None:
        self.queue = FakeQueue(channel)
        self.published: list[dict[str, Any]] = []
        self.failing = False
        self.release = asyncio.Event()
        self.release.set()

    async def publish(self, body: bytes, **options: Any) -> None:
        await self.release.wait()
        if self.failing:
            raise ConnectionError("dead letter not confirmed")
        self.published.append({"body": body, **options})

    async def declare_queue(self, queue: Any) -> FakeQueue:
        assert queue.name == TOPOLOGY.billing_queue_name
        return self.queue


class FakeLedger:
    """Records batches; an entry in `failing` fails, one in `unbillable` cannot be priced.

    `gate` holds commits.
    """

    def __init__(self) -> None:
        self.batches: list[list[Entry]] = []
        self.failing: set[uuid.UUID] = set()
        self.unbillable: set[uuid.UUID] = set()
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, entries: list[Entry]) -> Sequence[Recorded | Exception]:
        self.batches.append(entries)
        await self.gate.wait()
        return [self._outcome(entry) for entry in entries]

    def _outcome(self, entry: Entry) -> Recorded | Exception:
        if entry.event_id in self.failing:
            return RuntimeError("constraint violated")
        if entry.event_id in self.unbillable:
            return CostOutOfRange(f"event {entry.event_id}: cost 1000000.0000 exceeds 999999.9999")
        return UsageRecorded(True, Placement(draft_job_id="d"), Decimal("0.1000"))


class Billing:
    def __init__(self) -> None:
        self.channel = FakeChannel()
        self.broker = FakeBroker(self.channel)
        self.ledger = FakeLedger()
        self.consumer = Consumer(
            self.broker,  # type: ignore[arg-type]
            TOPOLOGY,
            self.ledger,
            batch_max_size=100,
            max_failed_attempts=MAX_FAILED_ATTEMPTS,
        )
        self._tags = iter(range(1, 1_000_000))

    def message(
        self, body: bytes | None = None, headers: dict[str, Any] | None = None
    ) -> FakeMessage:
        if body is None:
            body = generated(uuid.uuid4()).model_dump_json(by_alias=True).encode()
        return FakeMessage(self.channel, next(self._tags), body, headers or {})

    async def deliver(self, *messages: FakeMessage) -> None:
        await asyncio.gather(*(self.consumer.on_message(m) for m in messages))  # type: ignore[arg-type]
        await self.consumer.drain()

    async def __aenter__(self) -> Billing:
        await self.consumer.start()
        assert self.consumer.consuming()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop(graceful_timeout=1)


async def test_a_committed_message_is_acknowledged_after_its_commit() -> None:
    async with Billing() as billing:
        billing.ledger.gate.clear()
        message = billing.message()
        delivery = asyncio.create_task(billing.deliver(message))
        await asyncio.sleep(0.01)
        assert billing.ledger.batches, "the message reached the ledger"
        assert billing.channel.frames == []  # not before the commit

        billing.ledger.gate.set()
        await delivery

        assert billing.channel.frames == [("ack", 1, True)]
        assert billing.broker.published == []


async def test_poison_is_dead_lettered_with_its_reason_then_acknowledged() -> None:
    async with Billing() as billing:
        await billing.deliver(billing.message(b"not json{"))

        [dead_letter] = billing.broker.published
        assert dead_letter["exchange"].name == TOPOLOGY.billing_dlx_name
        assert dead_letter["headers"][REASON] == "poison"
        assert dead_letter["body"] == b"not json{"
        assert billing.ledger.batches == []  # nothing recorded
        assert billing.channel.frames == [("ack", 1, True)]


async def test_a_cost_the_ledger_cannot_hold_is_poison_dead_lettered_at_once() -> None:
    async with Billing() as billing:
        messages = [billing.message() for _ in range(3)]
        unbillable = messages[1]
        billing.ledger.unbillable = {event_id(unbillable)}
        await billing.deliver(*messages)

        [dead_letter] = billing.broker.published  # not sent round again: no retry helps
        assert dead_letter["message_id"] == unbillable.message_id
        assert dead_letter["exchange"].name == TOPOLOGY.billing_dlx_name
        assert dead_letter["headers"][REASON] == "poison"
        assert "exceeds" in dead_letter["headers"][DETAIL]
        assert ATTEMPTS not in dead_letter["headers"]
        assert billing.channel.frames == [("ack", 3, True)]


async def test_a_failed_message_goes_round_again_with_its_attempts_counted() -> None:
    async with Billing() as billing:
        message = billing.message()
        billing.ledger.failing = {event_id(message)}
        await billing.deliver(message)

        [again] = billing.broker.published
        assert again["exchange"] is None
        assert again["routing_key"] == TOPOLOGY.billing_queue_name
        assert again["headers"][ATTEMPTS] == 1
        assert REASON not in again["headers"]
        assert billing.channel.frames == [("ack", 1, True)]


async def test_a_message_failing_max_failed_attempts_times_is_dead_lettered() -> None:
    async with Billing() as billing:
        message = billing.message(headers={ATTEMPTS: MAX_FAILED_ATTEMPTS - 1})
        billing.ledger.failing = {event_id(message)}
        await billing.deliver(message)

        [dead_letter] = billing.broker.published
        assert dead_letter["exchange"].name == TOPOLOGY.billing_dlx_name
        assert dead_letter["headers"][REASON] == "failed"
        assert billing.channel.frames == [("ack", 1, True)]


async def test_a_message_that_cannot_be_settled_is_nacked_before_any_ack_covers_it() -> None:
    async with Billing() as billing:
        billing.broker.failing = True  # its dead letter is never confirmed
        first, poison, last = billing.message(), billing.message(b"{}"), billing.message()
        await billing.deliver(first, poison, last)

        frames = billing.channel.frames
        acks_covering_2 = [
            i for i, (kind, tag, _) in enumerate(frames) if kind == "ack" and tag >= 2
        ]
        assert frames.index(("nack", 2, True)) < min(acks_covering_2)
        assert frames[-1] == ("ack", 3, True)


async def test_a_nacked_message_is_never_the_tag_an_acknowledgement_names() -> None:
    """RabbitMQ closes the channel on a multiple-ack naming a tag no longer outstanding."""
    async with Billing() as billing:
        billing.broker.failing = True  # its dead letter is never confirmed
        await billing.deliver(billing.message(b"{}"))  # alone: nothing below it to acknowledge
        first, poison = billing.message(), billing.message(b"{}")
        await billing.deliver(first, poison)  # the highest settled tag is the nacked one
        billing.broker.failing = False
        await billing.deliver(billing.message())  # the channel goes on

        assert billing.channel.closed_by is None, billing.channel.frames
        assert not billing.channel.is_closed
        acknowledged = {tag for kind, tag, _ in billing.channel.frames if kind == "ack"}
        nacked = {tag for kind, tag, _ in billing.channel.frames if kind == "nack"}
        assert nacked == {1, 3}
        assert not acknowledged & nacked
        assert billing.channel.outstanding == set()  # each message settled: none left over
        assert len(billing.ledger.batches) == 2  # the two good messages, each recorded once


async def test_an_unsettled_message_holds_back_the_acknowledgement_of_later_ones() -> None:
    async with Billing() as billing:
        billing.broker.release.clear()  # the poison's dead letter is not confirmed yet
        first, poison, last = billing.message(), billing.message(b"{}"), billing.message()
        delivery = asyncio.create_task(billing.deliver(first, poison, last))
        await asyncio.sleep(0.05)
        await billing.consumer.drain()
        assert billing.channel.frames == [("ack", 1, True)]  # 3 is committed but waits for 2

        billing.broker.release.set()
        await delivery
        assert billing.channel.frames == [("ack", 1, True), ("ack", 3, True)]


async def test_messages_arriving_together_share_commits_and_one_acknowledgement() -> None:
    async with Billing() as billing:
        messages = [billing.message() for _ in range(50)]
        await billing.deliver(*messages)

        assert sum(len(batch) for batch in billing.ledger.batches) == 50
        assert len(billing.ledger.batches) < 5  # batched, not one by one
        assert billing.channel.frames == [("ack", 50, True)]


async def test_a_failing_entry_fails_only_its_own_message() -> None:
    async with Billing() as billing:
        messages = [billing.message() for _ in range(5)]
        billing.ledger.failing = {event_id(messages[2])}
        await billing.deliver(*messages)

        [again] = billing.broker.published
        assert again["message_id"] == messages[2].message_id
        assert billing.channel.frames == [("ack", 5, True)]


async def test_a_generation_reaches_the_ledger_as_it_is_to_be_priced_there() -> None:
    async with Billing() as billing:
        event = generated(uuid.uuid4(), questions=7)
        await billing.deliver(billing.message(event.model_dump_json(by_alias=True).encode()))

        [[entry]] = billing.ledger.batches
        assert entry == event


async def test_nothing_is_acknowledged_on_a_closed_channel() -> None:
    async with Billing() as billing:
        billing.ledger.gate.clear()
        delivery = asyncio.create_task(billing.deliver(billing.message()))
        await asyncio.sleep(0.01)
        billing.channel.is_closed = True  # the broker has taken the message back
        billing.ledger.gate.set()
        await delivery
        assert billing.channel.frames == []


async def test_a_stopped_consumer_takes_no_more_messages() -> None:
    async with Billing() as billing:
        await billing.consumer.stop(graceful_timeout=1)
        assert not billing.consumer.consuming()
        assert billing.broker.queue.consumers == []
        await billing.deliver(billing.message())
        assert billing.ledger.batches == []
        assert billing.channel.frames == []  # left to the broker to deliver again


def test_nothing_is_acknowledgeable_before_it_is_settled() -> None:
    tags = SettledTags()
    for tag in (1, 2, 3):
        tags.received(tag)
    assert tags.acknowledgeable() is None


def test_one_ack_covers_a_settled_run_from_the_lowest_tag() -> None:
    tags = SettledTags()
    for tag in range(1, 6):
        tags.received(tag)
    for tag in (1, 2, 3):
        tags.settle(tag)
    assert tags.acknowledgeable() == 3
    assert tags.acknowledgeable() is None  # already covered
    assert len(tags) == 2


def test_a_released_tag_is_covered_but_never_named() -> None:
    tags = SettledTags()
    for tag in (1, 2, 3, 4):
        tags.received(tag)
    tags.release(1)  # nacked: the broker no longer holds it
    assert tags.acknowledgeable() is None  # nothing to acknowledge below 2
    tags.settle(2)
    tags.release(3)
    assert tags.acknowledgeable() == 2  # not 3: the broker would close the channel
    tags.settle(4)
    assert tags.acknowledgeable() == 4
    assert len(tags) == 0


def test_tags_received_out_of_order_are_still_covered_in_order() -> None:
    tags = SettledTags()
    for tag in (3, 1, 2):
        tags.received(tag)
    tags.settle(3)
    assert tags.acknowledgeable() is None  # 1 and 2 are not settled: 3 must wait
    tags.settle(1)
    assert tags.acknowledgeable() == 1
    tags.settle(2)
    assert tags.acknowledgeable() == 3
