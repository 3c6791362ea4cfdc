"""What the price book does: add a version, tell a company its prices, price a batch.

Every change is written with its `PriceChanged` event in one transaction (billing's
outbox), so the question service learns every version billing has.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import structlog

from contracts.events import DEFAULT_PRICE_COMPANY, PriceChanged, QuestionsGenerated
from services.billing.ledger.rules import Pricing
from services.billing.prices import store
from services.billing.prices.rules import (
    PriceBook,
    PriceVersion,
    check_after_billed,
    check_not_retroactive,
    environment_default,
    latest_default,
)
from services.servicekit import outbox
from services.servicekit.db import Connection

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CompanyPrices:
    current: PriceVersion
    versions: list[PriceVersion]  # the company's own and the defaults, latest first


def price_changed(version: PriceVersion) -> PriceChanged:
    return PriceChanged(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=version.company_id or DEFAULT_PRICE_COMPANY,
        price_id=version.price_id,
        is_default=version.is_default,
        price_per_10_questions=version.pricing.price_per_10_questions,
        profit_margin_percent=version.pricing.profit_margin_percent,
        effective_from=version.effective_from,
    )


async def set_price(
    conn: Connection,
    company_id: UUID | None,
    pricing: Pricing,
    effective_from: datetime,
    *,
    requested_at: datetime,
    created_by: str | None,
) -> PriceVersion:
    """Add a company's version (None: a default version); `RetroactivePrice` if it would
    start before the request's own time, or at or before usage already billed.

    Inside the caller's transaction. The first check needs nothing but the request. Then
    the price lock makes the batches pricing the company's events finish first (and later
    ones wait for this transaction): so the latest generation billed, read after it, is
    every generation priced by the versions before this one.
    """
    check_not_retroactive(effective_from, requested_at)
    await store.lock_for_change(conn, company_id)
    check_after_billed(effective_from, await store.last_billed(conn, company_id))
    version = PriceVersion(uuid.uuid4(), company_id, pricing, effective_from)
    sequence = await store.add_version(conn, version, created_by)
    await outbox.enqueue(conn, price_changed(version))
    return PriceVersion(
        version.price_id, company_id, pricing, effective_from.astimezone(UTC), sequence
    )


async def prices_of(
    conn: Connection, company_id: UUID, environment: Pricing, now: datetime
) -> CompanyPrices:
    """The company's price in force `now` (the request's clock) and every version of it."""
    versions = await store.versions_for(conn, [company_id])
    if not any(version.is_default for version in versions):
        versions.append(environment_default(environment))  # billing seeds it at start
    current = PriceBook.of(versions).price_at(company_id, now)
    assert current is not None  # a default is in force since the epoch
    ordered = sorted(versions, key=lambda v: (v.effective_from, v.sequence), reverse=True)
    return CompanyPrices(current, ordered)


async def seed_default(conn: Connection, environment: Pricing) -> PriceVersion:
    """The environment's price as the first default, on a book that has none; else the
    latest default, as it is.

    Run at start, in its own transaction, under the default's price lock (replicas that
    start together seed it once). The environment only seeds: a replica restarted with
    an old `PRICE_PER_10_QUESTIONS` during a rollout must not put the old price back for
    everyone. Later defaults are set by an operator, as any price.
    """
    await store.lock_for_change(conn, None)
    latest = latest_default(await store.default_versions(conn))
    if latest is not None:
        return latest
    version = environment_default(environment)
    await store.add_version(conn, version, "environment")
    await outbox.enqueue(conn, price_changed(version))
    return version


async def seed_environment_price(pool: asyncpg.Pool, environment: Pricing) -> None:
    """At start: the environment's price seeds the book; a differing one is only reported."""
    async with pool.acquire() as conn, conn.transaction():
        default = await seed_default(conn, environment)
    if default.pricing != environment:
        log.warning(
            "the environment's price is not the default price in force, and is ignored: "
            "it only seeds an empty price book; an operator sets the default with "
            f"PUT /api/billing/admin/companies/{DEFAULT_PRICE_COMPANY}/price",
            environment_price=str(environment.price_per_10_questions),
            environment_margin=str(environment.profit_margin_percent),
            default_price=str(default.pricing.price_per_10_questions),
            default_margin=str(default.pricing.profit_margin_percent),
            default_price_id=str(default.price_id),
        )


async def prices_at(
    conn: Connection, generated: Sequence[QuestionsGenerated]
) -> list[PriceVersion | None]:
    """For a batch: the version in force at each generation's occurredAt, in order.

    One query for the batch's price versions, after taking the companies' price
    locks shared (see `set_price`). None only before billing first started on this
    database: the row then keeps the environment's price and no priceId.
    """
    if not generated:
        return []
    companies = [event.company_id for event in generated]
    await store.lock_for_pricing(conn, companies)
    book = PriceBook.of(await store.versions_for(conn, companies))
    return [book.price_at(event.company_id, event.occurred_at) for event in generated]
