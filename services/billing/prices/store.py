"""The price book's SQL. Functions take a connection and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from services.billing.ledger.rules import Pricing
from services.billing.prices.rules import PriceVersion
from services.servicekit.db import Connection

# Advisory-lock class of the price book (the two-int key space, apart from the ledger's keys).
PRICE_LOCK_CLASS = 0x0B11_0003
# hashtext of '' names the default's lock.
DEFAULT_LOCK_NAME = ""

# A price change waits for batches pricing events of its company, and they wait for it:
# a version committed after a batch priced an event can only start later than that event.
LOCK_FOR_CHANGE = "SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))"

# Batches take the companies' locks shared (sorted, so no two batches deadlock).
LOCK_FOR_PRICING = """
SELECT pg_advisory_xact_lock_shared($1::int, key)
FROM (SELECT DISTINCT hashtext(name) AS key FROM unnest($2::text[]) AS name ORDER BY 1) AS keys
"""

# The latest generation a company has been billed for (by index: company, created_at).
LAST_BILLED_OF_COMPANY = """
SELECT max(created_at) FROM question_generation_usage WHERE company_id = $1
"""

# The latest generation billed to any company: one index probe per company that has usage
# (the per-period rollups name them), not a scan of the ledger.
LAST_BILLED_OF_ANY = """
SELECT max(last.created_at)
FROM (SELECT DISTINCT company_id FROM rollup_periods) AS company
CROSS JOIN LATERAL (
    SELECT created_at FROM question_generation_usage AS usage
    WHERE usage.company_id = company.company_id
    ORDER BY created_at DESC
    LIMIT 1
) AS last
"""

ADD_VERSION = """
INSERT INTO price_versions (
    price_id, company_id, price_per_10_questions, profit_margin_percent, effective_from, created_by
)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id
"""

# Every version of the given companies, and every default one.
VERSIONS_FOR = """
SELECT id, price_id, company_id, price_per_10_questions, profit_margin_percent, effective_from
FROM price_versions
WHERE company_id = ANY($1::uuid[]) OR company_id IS NULL
"""

# The default versions alone.
DEFAULT_VERSIONS = """
SELECT id, price_id, company_id, price_per_10_questions, profit_margin_percent, effective_from
FROM price_versions
WHERE company_id IS NULL
"""


def _version(row: asyncpg.Record) -> PriceVersion:
    return PriceVersion(
        price_id=row["price_id"],
        company_id=row["company_id"],
        pricing=Pricing(row["price_per_10_questions"], row["profit_margin_percent"]),
        effective_from=row["effective_from"],
        sequence=row["id"],
    )


async def lock_for_change(conn: Connection, company_id: UUID | None) -> None:
    name = DEFAULT_LOCK_NAME if company_id is None else str(company_id)
    await conn.execute(LOCK_FOR_CHANGE, PRICE_LOCK_CLASS, name)


async def lock_for_pricing(conn: Connection, company_ids: Sequence[UUID]) -> None:
    names = [*sorted({str(company) for company in company_ids}), DEFAULT_LOCK_NAME]
    await conn.execute(LOCK_FOR_PRICING, PRICE_LOCK_CLASS, names)


async def last_billed(conn: Connection, company_id: UUID | None) -> datetime | None:
    """When the latest generation of the company (None: of any company) occurred."""
    if company_id is None:
        value: datetime | None = await conn.fetchval(LAST_BILLED_OF_ANY)
    else:
        value = await conn.fetchval(LAST_BILLED_OF_COMPANY, company_id)
    return value


async def add_version(conn: Connection, version: PriceVersion, created_by: str | None) -> int:
    sequence: int = await conn.fetchval(
        ADD_VERSION,
        version.price_id,
        version.company_id,
        version.pricing.price_per_10_questions,
        version.pricing.profit_margin_percent,
        version.effective_from,
        created_by,
    )
    return sequence


async def versions_for(conn: Connection, company_ids: Sequence[UUID]) -> list[PriceVersion]:
    """The companies' versions and the defaults, in one query."""
    rows = await conn.fetch(VERSIONS_FOR, list(set(company_ids)))
    return [_version(row) for row in rows]


async def default_versions(conn: Connection) -> list[PriceVersion]:
    return [_version(row) for row in await conn.fetch(DEFAULT_VERSIONS)]
