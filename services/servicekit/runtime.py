"""What a publishing service holds while it runs: pool, broker, outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from faststream.rabbit import RabbitBroker

from contracts.topology import Topology
from services.servicekit import db
from services.servicekit.broker import connect_with_retry, make_broker
from services.servicekit.health import Check
from services.servicekit.outbox import OutboxRelay
from services.servicekit.settings import PublisherSettings, ServiceSettings
from services.servicekit.tracing import Tracing


@dataclass
class PublisherRuntime:
    pool: asyncpg.Pool
    broker: RabbitBroker
    relay: OutboxRelay
    topology: Topology

    def readiness(self) -> Mapping[str, Check]:
        async def broker_ready() -> bool:
            return await self.broker.ping(timeout=1.0)

        async def database_ready() -> bool:
            return await db.ping(self.pool)

        return {"database": database_ready, "broker": broker_ready}


async def open_pool(settings: ServiceSettings) -> asyncpg.Pool:
    """The service's connection pool, sized by its settings."""
    return await db.create_pool(
        settings.database_url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
    )


def outbox_relay(
    pool: asyncpg.Pool,
    broker: RabbitBroker,
    topology: Topology,
    settings: PublisherSettings,
    *,
    tracing: Tracing | None = None,
) -> OutboxRelay:
    """The relay that publishes the service's outbox, tuned by its settings (not started)."""
    return OutboxRelay(
        pool,
        broker,
        topology,
        listen_dsn=settings.database_url,
        batch_size=settings.outbox_batch_size,
        sweep_interval=settings.outbox_sweep_interval_seconds,
        publish_timeout=settings.outbox_publish_timeout_seconds,
        tracing=tracing,
    )


@asynccontextmanager
async def publisher_runtime(
    settings: PublisherSettings, *, app_id: str, tracing: Tracing | None = None
) -> AsyncIterator[PublisherRuntime]:
    """Open the pool, connect the broker in the background, run the relay; close in reverse."""
    topology = Topology(settings.rabbitmq_topology_prefix)
    pool = await open_pool(settings)
    broker = make_broker(
        settings.rabbitmq_url, app_id=app_id, graceful_timeout=settings.graceful_timeout_seconds
    )
    relay = outbox_relay(pool, broker, topology, settings, tracing=tracing)
    connecting = asyncio.create_task(connect_with_retry(broker, topology))
    connecting.add_done_callback(lambda _task: relay.wake())
    relay.start()
    try:
        yield PublisherRuntime(pool=pool, broker=broker, relay=relay, topology=topology)
    finally:
        await relay.stop()
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        await broker.stop()
        await pool.close()
