"""Budgets' SQL. Functions take a connection and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

import asyncpg

from services.servicekit.db import Connection

GET_BUDGET = """
SELECT monthly_limit, thresholds, webhook_url, revision FROM budgets WHERE company_id = $1
"""

# Replace the budget. A webhook secret is made when a URL is set and there is none;
# removing the URL removes the secret. `secret_is_new` tells the one answer to show it in.
PUT_BUDGET = """
INSERT INTO budgets (company_id, monthly_limit, thresholds, webhook_url, webhook_secret)
VALUES ($1, $2, $3, $4, CASE WHEN $4::text IS NULL THEN NULL ELSE $5 END)
ON CONFLICT (company_id) DO UPDATE SET
    monthly_limit = EXCLUDED.monthly_limit,
    thresholds = EXCLUDED.thresholds,
    webhook_url = EXCLUDED.webhook_url,
    webhook_secret = CASE
        WHEN EXCLUDED.webhook_url IS NULL THEN NULL
        ELSE COALESCE(budgets.webhook_secret, EXCLUDED.webhook_secret)
    END,
    revision = budgets.revision + 1,
    updated_at = clock_timestamp()
RETURNING monthly_limit, thresholds, webhook_url, revision, webhook_secret,
    webhook_secret IS NOT DISTINCT FROM $5 AND webhook_url IS NOT NULL AS secret_is_new
"""

# Spent: what billing billed the company in the period, from the per-period rollup.
SPENT = "SELECT cost FROM rollup_periods WHERE company_id = $1 AND period = $2"

# The periods a batch billed, with their totals after it, and the companies' budgets.
# Exact between concurrent batches: the batch's rollup update (an earlier effect) holds each
# (company, period) row's lock until commit, so another batch's update of the same row
# waits for this one, and its read here then sees this batch's total included.
SPENT_AFTER = """
SELECT k.company_id, k.period, p.cost AS spent, b.monthly_limit, b.thresholds,
       b.webhook_url IS NOT NULL AS has_webhook
FROM unnest($1::uuid[], $2::text[]) AS k(company_id, period)
JOIN rollup_periods p ON p.company_id = k.company_id AND p.period = k.period
LEFT JOIN budgets b ON b.company_id = k.company_id
ORDER BY k.company_id, k.period
"""


@dataclass(frozen=True)
class Budget:
    monthly_limit: Decimal | None
    thresholds: list[int]
    webhook_url: str | None
    revision: int


@dataclass(frozen=True)
class BudgetSet:
    budget: Budget
    new_secret: str | None  # the secret, when this change made it


@dataclass(frozen=True)
class PeriodSpend:
    company_id: UUID
    period: str
    spent: Decimal
    monthly_limit: Decimal | None
    thresholds: list[int]
    has_webhook: bool


def _budget(row: asyncpg.Record) -> Budget:
    return Budget(
        row["monthly_limit"], list(row["thresholds"]), row["webhook_url"], row["revision"]
    )


async def get_budget(conn: Connection, company_id: UUID) -> Budget | None:
    row = await conn.fetchrow(GET_BUDGET, company_id)
    return _budget(row) if row is not None else None


async def put_budget(
    conn: Connection,
    company_id: UUID,
    monthly_limit: Decimal | None,
    thresholds: list[int],
    webhook_url: str | None,
    candidate_secret: str,
) -> BudgetSet:
    row = await conn.fetchrow(
        PUT_BUDGET, company_id, monthly_limit, thresholds, webhook_url, candidate_secret
    )
    assert row is not None
    return BudgetSet(_budget(row), row["webhook_secret"] if row["secret_is_new"] else None)


async def spent(conn: Connection, company_id: UUID, period: str) -> Decimal:
    value = await conn.fetchval(SPENT, company_id, period)
    return value if value is not None else Decimal("0.0000")


async def spent_after(conn: Connection, periods: Sequence[tuple[UUID, str]]) -> list[PeriodSpend]:
    if not periods:
        return []
    rows = await conn.fetch(
        SPENT_AFTER,
        [company for company, _ in periods],
        [period for _, period in periods],
    )
    return [
        PeriodSpend(
            row["company_id"],
            row["period"],
            row["spent"],
            row["monthly_limit"],
            list(row["thresholds"] or []),
            bool(row["has_webhook"]),
        )
        for row in rows
    ]
