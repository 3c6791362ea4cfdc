"""Composition root of billing: the ledger's consumer and the HTTP read API in one process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from fastapi import FastAPI
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import REGISTRY

from contracts.topology import Topology
from services.billing.budgets.api import router as budgets_router
from services.billing.config import Settings
from services.billing.console.router import router as console_router
from services.billing.costs.api import router as costs_router
from services.billing.costs.book import load_shipped_prices
from services.billing.costs.repricing import Repricer
from services.billing.credits.api import router as credits_router
from services.billing.credits.expiry import CreditExpiry
from services.billing.ledger.consume import Consumer
from services.billing.ledger.record import record_batch
from services.billing.ledger.rules import Pricing
from services.billing.prices.api import router as prices_router
from services.billing.prices.book import seed_environment_price
from services.billing.reads.api import ERRORS, router
from services.billing.reconciliation.api import router as reconciliation_router
from services.billing.reconciliation.provider import OpenAiUsage
from services.billing.reconciliation.schedule import Reconciler
from services.billing.statements.api import router as statements_router
from services.billing.webhooks.api import router as webhooks_router
from services.billing.webhooks.deliver import WebhookDeliverer
from services.billing.webhooks.rules import DeliveryPolicy
from services.billing.webhooks.urls import parse_allowed_hosts
from services.servicekit import db
from services.servicekit.broker import connect_with_retry, make_broker
from services.servicekit.health import Check
from services.servicekit.http import service_app
from services.servicekit.runtime import open_pool, outbox_relay
from services.servicekit.tracing import Tracing

SERVICE = "billing"


@dataclass
class BillingRuntime:
    """What the billing process holds while it runs."""

    pool: asyncpg.Pool
    broker: RabbitBroker
    consumer: Consumer
    repricer: Repricer
    reconciler: Reconciler

    def readiness(self) -> Mapping[str, Check]:
        async def database() -> bool:
            return await db.ping(self.pool)

        async def broker() -> bool:
            return await self.broker.ping(timeout=1.0)

        async def consumer() -> bool:
            return self.consumer.consuming()

        return {"database": database, "broker": broker, "consumer": consumer}


@asynccontextmanager
async def billing_runtime(
    settings: Settings, tracing: Tracing | None = None
) -> AsyncIterator[BillingRuntime]:
    """Open the pool, connect and consume in the background; stop consuming gracefully."""
    topology = Topology(settings.rabbitmq_topology_prefix)
    pool = await open_pool(settings)
    broker = make_broker(
        settings.rabbitmq_url,
        app_id=SERVICE,
        graceful_timeout=settings.graceful_timeout_seconds,
        prefetch_count=settings.prefetch_count,
        middlewares=[RabbitPrometheusMiddleware(registry=REGISTRY, app_name=SERVICE)],
    )
    pricing = Pricing(settings.price_per_10_questions, settings.profit_margin_percent)
    consumer = Consumer(
        broker,
        topology,
        functools.partial(record_batch, pool, default=pricing),
        batch_max_size=settings.batch_max_size,
        max_failed_attempts=settings.max_failed_attempts,
        tracing=tracing,
    )
    # Billing's own events (prices, budgets, spend) leave through its outbox.
    relay = outbox_relay(pool, broker, topology, settings, tracing=tracing)
    deliverer = WebhookDeliverer(
        pool,
        allowed_hosts=parse_allowed_hosts(settings.webhook_allowed_hosts),
        policy=DeliveryPolicy(
            timeout_seconds=settings.webhook_timeout_seconds,
            first_retry_seconds=settings.webhook_first_retry_seconds,
            max_retry_seconds=settings.webhook_max_retry_seconds,
        ),
        poll_seconds=settings.webhook_poll_seconds,
    )
    # Every process runs it; a lock lets one expire at a time (credits/expiry.py).
    expiry = CreditExpiry(pool, poll_seconds=settings.credit_expiry_poll_seconds)
    repricer = Repricer(
        pool,
        batch_size=settings.repricing_batch_size,
        poll_seconds=settings.repricing_poll_seconds,
    )
    reconciler = Reconciler(
        pool,
        usage_reader(settings),
        tolerance=settings.reconciliation_tolerance_percent,
        daily=settings.reconciliation_daily,
        poll_seconds=settings.reconciliation_poll_seconds,
        retry_seconds=settings.reconciliation_retry_seconds,
    )
    # Before the first batch: every generation is priced by a version of the book, and
    # the models in common use have their shipped prices (once per database).
    await seed_environment_price(pool, pricing)
    await load_shipped_prices(pool)

    async def start() -> None:
        await consumer.start()
        relay.start()  # once the topology is declared: nothing it publishes goes unrouted

    connecting = asyncio.create_task(connect_with_retry(broker, topology, then=start))
    deliverer.start()
    expiry.start()
    repricer.start()
    reconciler.start()
    try:
        yield BillingRuntime(pool, broker, consumer, repricer, reconciler)
    finally:
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        # Stop taking messages, let those in hand commit and be acknowledged, then close.
        await consumer.stop(settings.graceful_timeout_seconds)
        await deliverer.stop()
        await expiry.stop()
        await repricer.stop()
        await reconciler.stop()
        await relay.stop()
        await broker.stop()
        await pool.close()


def usage_reader(settings: Settings) -> OpenAiUsage | None:
    """The provider's usage API, when an admin key is set; None: reconciliation is off."""
    if settings.openai_admin_key is None:
        return None
    return OpenAiUsage(
        base_url=settings.openai_admin_base_url,
        admin_key=settings.openai_admin_key,
        project_id=settings.openai_project_id,
        timeout_seconds=settings.reconciliation_timeout_seconds,
        attempts=settings.reconciliation_attempts,
        backoff_seconds=settings.reconciliation_backoff_seconds,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    tracing = Tracing.from_environment(SERVICE)
    return service_app(
        service=SERVICE,
        title="Billing service",
        description="Usage billed exactly once per generation; drafts reconciled onto jobs.",
        settings=settings,
        runtime=lambda: billing_runtime(settings, tracing),
        routers=[
            router,
            prices_router,
            budgets_router,
            webhooks_router,
            statements_router,
            credits_router,
            costs_router,
            reconciliation_router,
            console_router,
        ],
        errors=ERRORS,
        tracing=tracing,
    )
