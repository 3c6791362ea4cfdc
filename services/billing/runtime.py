"""What the billing process holds while it runs: pool, broker, batcher, consumer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import REGISTRY

from contracts.events import Event
from contracts.topology import Topology
from services.billing.acks import Acknowledger
from services.billing.batching import Batcher
from services.billing.config import Settings
from services.billing.dead_letters import DeadLetters
from services.billing.handlers import DraftsReconciled, UsageRecorded
from services.billing.intake import Intake
from services.billing.pricing import Pricing
from services.billing.recorder import UsageRecorder
from services.billing.worker import BillingConsumer
from services.servicekit import db
from services.servicekit.broker import connect_with_retry, make_broker
from services.servicekit.health import Check


@dataclass
class BillingRuntime:
    settings: Settings
    pool: asyncpg.Pool
    broker: RabbitBroker
    batcher: Batcher[Event, UsageRecorded | DraftsReconciled]
    consumer: BillingConsumer
    connecting: asyncio.Task[None]

    @classmethod
    async def open(cls, settings: Settings) -> BillingRuntime:
        topology = Topology(settings.rabbitmq_topology_prefix)
        pricing = Pricing(settings.price_per_10_questions, settings.profit_margin_percent)
        pool = await db.create_pool(
            settings.database_url,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
        )
        broker = make_broker(
            settings.rabbitmq_url,
            app_id="billing",
            graceful_timeout=settings.graceful_timeout_seconds,
            prefetch_count=settings.prefetch_count,
            middlewares=[RabbitPrometheusMiddleware(registry=REGISTRY, app_name="billing")],
        )
        batcher: Batcher[Event, UsageRecorded | DraftsReconciled] = Batcher(
            UsageRecorder(pool, pricing).record, max_size=settings.batch_max_size
        )
        acks = Acknowledger()
        intake = Intake(
            batcher,
            DeadLetters(broker, topology),
            acks,
            pricing,
            max_failed_attempts=settings.max_failed_attempts,
        )
        consumer = BillingConsumer(broker, topology, intake, acks)
        batcher.start()
        connecting = asyncio.create_task(connect_with_retry(broker, topology, then=consumer.start))
        return cls(settings, pool, broker, batcher, consumer, connecting)

    async def close(self) -> None:
        """Stop consuming, let in-flight messages commit and ack, then close."""
        self.connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.connecting
        await self.consumer.stop(self.settings.graceful_timeout_seconds)
        await self.broker.stop()
        await self.batcher.stop()
        await self.pool.close()

    def consuming(self) -> bool:
        return self.consumer.consuming()

    def readiness(self) -> Mapping[str, Check]:
        async def database() -> bool:
            return await db.ping(self.pool)

        async def broker() -> bool:
            return await self.broker.ping(timeout=1.0)

        async def consumer() -> bool:
            return self.consuming()

        return {"database": database, "broker": broker, "consumer": consumer}
