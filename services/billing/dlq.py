"""`python -m services.billing.dlq [--limit N] [--dry-run]`: the DLQ back to billing.

Run after the cause of the failures is fixed. Each message goes to the billing
queue through the default exchange, with its event type restored (`type` =
the routing key it was first published with) and the headers of its past
failures removed, so that it starts afresh. The DLQ copy is acknowledged only
after the broker confirmed the new one: a crash in between leaves the message
in both queues, and billing absorbs the duplicate by event id.

At most the messages that were in the DLQ when the command started are moved,
so a message that fails again and comes back is not replayed twice in one run.
`--dry-run` lists them without moving anything (it takes and returns each
message, so each counts as one delivery on the DLQ).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from contracts.topology import Topology
from services.billing.config import Settings
from services.billing.ledger.messages import DETAIL, FAILURE_HEADERS, REASON, original_routing_key
from services.servicekit import broker


@dataclass(frozen=True)
class Replayed:
    """What a run found and did."""

    in_dlq: int
    moved: int
    dry_run: bool


def replay_message(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The message as first published: its type restored, its failures forgotten."""
    headers = {
        key: value for key, value in (message.headers or {}).items() if key not in FAILURE_HEADERS
    }
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=original_routing_key(message) or None,
        app_id=message.app_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def describe(message: AbstractIncomingMessage) -> str:
    headers = message.headers or {}
    return (
        f"message_id={message.message_id} type={original_routing_key(message) or '-'} "
        f"reason={_text(headers.get(REASON, '-'))} detail={_text(headers.get(DETAIL, '-'))[:200]}"
    )


async def _queue_size(channel: AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    return int(queue.declaration_result.message_count or 0)


async def replay(
    settings: Settings,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    out: TextIO = sys.stdout,
) -> Replayed:
    topology = Topology(settings.rabbitmq_topology_prefix)
    connection = await broker.connect(settings.rabbitmq_url)
    async with connection:
        # Confirms, and an unroutable publish (no billing queue) raises instead of vanishing.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await _queue_size(channel, topology.billing_queue_name)  # it must exist
        in_dlq = await _queue_size(channel, topology.billing_dlq_name)
        dlq = await channel.get_queue(topology.billing_dlq_name, ensure=False)
        budget = in_dlq if limit is None else min(limit, in_dlq)
        taken: list[AbstractIncomingMessage] = []
        moved = 0
        while moved + len(taken) < budget:
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            if dry_run:
                taken.append(message)
                print(f"would move {describe(message)}", file=out)
                continue
            await channel.default_exchange.publish(
                replay_message(message), routing_key=topology.billing_queue_name, mandatory=True
            )
            await message.ack()
            moved += 1
            print(f"moved {describe(message)}", file=out)
        for message in taken:
            await message.nack(requeue=True)
    verb = "would move" if dry_run else "moved"
    count = len(taken) if dry_run else moved
    print(
        f"{verb} {count} of {in_dlq} messages from {topology.billing_dlq_name} "
        f"to {topology.billing_queue_name}",
        file=out,
    )
    return Replayed(in_dlq=in_dlq, moved=moved, dry_run=dry_run)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.billing.dlq",
        description="Move messages from the billing DLQ back to the billing queue.",
    )
    parser.add_argument("--limit", type=_positive, help="move at most this many messages")
    parser.add_argument("--dry-run", action="store_true", help="list them, move nothing")
    args = parser.parse_args(argv)
    asyncio.run(replay(Settings(), limit=args.limit, dry_run=args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
