"""The RabbitMQ broker of a service, and the topology every service declares at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aio_pika
import structlog
from faststream.rabbit import Channel, RabbitBroker

from contracts.topology import Topology

log = structlog.get_logger(__name__)


# Behind a network that drops packets without a reset, only heartbeats tell a connection is
# dead. With RabbitMQ's default (60 s) a worker went on believing it consumed (and `/readyz`
# said so) for over three minutes after the broker had dropped its consumer.
HEARTBEAT_SECONDS = 10


def with_heartbeat(url: str, seconds: int = HEARTBEAT_SECONDS) -> str:
    """`url` asking for `seconds` between heartbeats, unless it asks for its own."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "heartbeat" for key, _ in query):
        return url
    query.append(("heartbeat", str(seconds)))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def make_broker(
    url: str,
    *,
    app_id: str,
    graceful_timeout: float = 15.0,
    prefetch_count: int | None = None,
    middlewares: Sequence[Any] = (),
) -> RabbitBroker:
    return RabbitBroker(
        with_heartbeat(url),
        app_id=app_id,
        graceful_timeout=graceful_timeout,
        reconnect_interval=1.0,
        # An unroutable publish is an error, never a silent drop.
        default_channel=Channel(prefetch_count=prefetch_count, on_return_raises=True),
        middlewares=middlewares,
        logger=logging.getLogger(f"{app_id}.broker"),
        log_level=logging.DEBUG,
    )


async def declare_topology(broker: RabbitBroker, topology: Topology) -> None:
    """Declare exchange, billing queue, dead-lettering and bindings. Idempotent."""
    exchange = await broker.declare_exchange(topology.exchange())
    dead_letters = await broker.declare_exchange(topology.dead_letter_exchange())
    dlq = await broker.declare_queue(topology.billing_dlq())
    await dlq.bind(dead_letters, routing_key="")
    queue = await broker.declare_queue(topology.billing_queue())
    for routing_key in topology.billing_bindings():
        await queue.bind(exchange, routing_key=routing_key)


async def declare_topology_at(url: str, topology: Topology) -> None:
    """Declare a topology without a running service (tests, benchmarks, a new environment)."""
    broker = make_broker(url, app_id="topology")
    await broker.connect()
    try:
        await declare_topology(broker, topology)
    finally:
        await broker.stop()


async def delete_topology(url: str, topology: Topology) -> None:
    """Remove a topology's queues and exchanges (tests, benchmarks, a retired prefix)."""
    connection = await aio_pika.connect(url)
    async with connection:
        for queue in (topology.billing_queue_name, topology.billing_dlq_name):
            channel = await connection.channel()  # a failed delete closes its channel
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
        for exchange in (topology.exchange_name, topology.billing_dlx_name):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)


async def connect_with_retry(
    broker: RabbitBroker,
    topology: Topology,
    *,
    then: Callable[[], Awaitable[None]] | None = None,
    max_delay: float = 5.0,
) -> None:
    """Connect, declare the topology and run `then` (start consuming), retrying until it works.

    Services start and answer HTTP while RabbitMQ is down; this runs beside them.
    """
    delay = 0.2
    while True:
        try:
            await broker.connect()
            await declare_topology(broker, topology)
            if then is not None:
                await then()
        except Exception as exc:
            log.warning("broker unreachable, retrying", error=str(exc) or type(exc).__name__)
            await broker.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
        else:
            log.info("broker connected", exchange=topology.exchange_name)
            return
