"""Talking to the real RabbitMQ from tests: publish as a relay would, inspect queues."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from contracts.events import Event
from contracts.topology import Topology
from services.servicekit import broker
from tests.support.env import RABBITMQ_URL


async def publish_raw(
    topology: Topology,
    body: bytes,
    *,
    routing_key: str,
    message_id: str | None = None,
    content_type: str = "application/json",
    headers: dict[str, Any] | None = None,
    correlation_id: str | None = None,
) -> None:
    """Publish persistently with confirms to the events exchange."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.exchange_name)
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type=content_type,
                message_id=message_id,
                headers=headers or {},
                correlation_id=correlation_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
            mandatory=True,
        )


async def publish_events(topology: Topology, *events: Event, times: int = 1) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.exchange_name)
        for event in events:
            for _ in range(times):
                await exchange.publish(
                    aio_pika.Message(
                        event.to_json(),
                        content_type="application/json",
                        message_id=str(event.event_id),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=event.routing_key,
                    mandatory=True,
                )


async def queue_depth(name: str) -> int:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)


async def drain(name: str) -> list[AbstractIncomingMessage]:
    """Take every message from a queue (acknowledged), oldest first."""
    taken: list[AbstractIncomingMessage] = []
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            taken.append(message)
    return taken


async def delete_topology(topology: Topology) -> None:
    await broker.delete_topology(RABBITMQ_URL, topology)
