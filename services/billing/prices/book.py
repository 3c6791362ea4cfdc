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

from contracts.events import DEFAULT_PRICE_COMPANY, PriceChanged, QuestionsGenerated
from services.billing.ledger.rules import Pricing
from services.billing.prices import store
from services.billing.prices.rules import (
    DEFAULT_EPOCH,
    PriceBook,
    PriceVersion,
    check_not_retroactive,
    default_needs_recording,
    default_price_id,
    environment_default,
)
from services.servicekit import outbox
from services.servicekit.db import Connection


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
    company_id: UUID,
    pricing: Pricing,
    effective_from: datetime,
    *,
    created_by: str | None,
) -> PriceVersion:
    """Add a company's version; `RetroactivePrice` if it would start before now.

    Inside the caller's transaction. The company's price lock makes batches that
    are pricing its events finish first, and "now" is read after it: so no event
    already priced can fall after the new version's start.
    """
    await store.lock_for_change(conn, company_id)
    check_not_retroactive(effective_from, await store.now(conn))
    version = PriceVersion(uuid.uuid4(), company_id, pricing, effective_from)
    sequence = await store.add_version(conn, version, created_by)
    await outbox.enqueue(conn, price_changed(version))
    return PriceVersion(
        version.price_id, company_id, pricing, effective_from.astimezone(UTC), sequence
    )


async def prices_of(conn: Connection, company_id: UUID, environment: Pricing) -> CompanyPrices:
    versions = await store.versions_for(conn, [company_id])
    if not any(version.is_default for version in versions):
        versions.append(environment_default(environment))  # billing records it at start
    current = PriceBook.of(versions).price_at(company_id, await store.now(conn))
    assert current is not None  # a default is in force since the epoch
    ordered = sorted(versions, key=lambda v: (v.effective_from, v.sequence), reverse=True)
    return CompanyPrices(current, ordered)


async def record_default(conn: Connection, environment: Pricing) -> PriceVersion | None:
    """Record the environment's price as the default, if it is not the latest default.

    Run at start, in its own transaction. The first default is in force since the
    epoch; a later change of the environment's price from the moment it is recorded.
    """
    await store.lock_for_change(conn, None)
    defaults = await store.default_versions(conn)
    if not default_needs_recording(defaults, environment):
        return None
    effective_from = DEFAULT_EPOCH if not defaults else await store.now(conn)
    version = PriceVersion(
        default_price_id(environment, effective_from), None, environment, effective_from
    )
    await store.add_version(conn, version, "environment")
    await outbox.enqueue(conn, price_changed(version))
    return version


async def record_environment_price(pool: asyncpg.Pool, environment: Pricing) -> None:
    """At start: the environment's price becomes (or stays) the latest default version."""
    async with pool.acquire() as conn, conn.transaction():
        await record_default(conn, environment)


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
