"""Talking to the real RabbitMQ from tests: publish as a relay would, inspect queues,
declare and delete a topology without a running service."""

from __future__ import annotations

import contextlib
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from contracts.events import Event
from contracts.topology import Topology
from services.servicekit.broker import broker_urls, declare_topology, make_broker
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


async def declare_topology_at(url: str, topology: Topology) -> None:
    """Declare a topology as the services do (tests, benchmarks, a new environment)."""
    broker = make_broker(url, app_id="topology")
    await broker.connect()
    try:
        await declare_topology(broker, topology)
    finally:
        await broker.stop()


async def delete_topology_at(url: str, topology: Topology) -> None:
    """Remove a topology's queues and exchanges (tests, benchmarks); one node of a cluster."""
    connection = await aio_pika.connect(broker_urls(url)[0])
    async with connection:
        for queue in (
            topology.billing_queue_name,
            topology.billing_dlq_name,
            topology.question_billing_queue_name,
        ):
            channel = await connection.channel()  # a failed delete closes its channel
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
        for exchange in (topology.exchange_name, topology.billing_dlx_name):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)


async def delete_topology(topology: Topology) -> None:
    await delete_topology_at(RABBITMQ_URL, topology)
