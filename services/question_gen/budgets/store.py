"""The budget guard's SQL. Functions take a connection and never commit.

The (company, period) row is the one lock every reservation of the period
takes, for one statement (autocommit): the generation's own transaction never
takes it (the generation row settles the reservation; a fold counts it later).
Locks, always in this order, so no two statements wait on each other: reservation
rows (folds skip those locked), then period rows in period order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from uuid import UUID

from contracts.events import BudgetChanged, PriceChanged, SpendRecorded
from services.question_gen.budgets.rules import PriceVersion, Terms
from services.servicekit.db import Connection

# A company's limit and every price version that may apply to it (its own and the
# defaults'); one row with NULL prices when billing has announced none.
TERMS = """
SELECT l.monthly_limit IS NOT NULL AS limited, p.price_id, p.company_id,
       p.price_per_10_questions, p.profit_margin_percent, p.effective_from, p.announced_at
FROM (SELECT 1) AS one
LEFT JOIN budget_limits l ON l.company_id = $1
LEFT JOIN budget_prices p ON p.company_id = $1 OR p.company_id IS NULL
"""

# The reservation, atomic: under the (company, period) row lock, `cost` is added to
# `reserved` only if spent (the greater of settled and billed) + reserved + cost fits the
# limit, and the reservation row is written only then. The period's first request
# inserts the row (cost <= limit); a concurrent first request conflicts, waits for the
# lock and is checked against the row as committed. No limit: nothing is written.
RESERVE = """
WITH counted AS (
    INSERT INTO budget_periods AS p (company_id, period, reserved)
    SELECT $1, $2, $4 FROM budget_limits l
    WHERE l.company_id = $1 AND $4 <= l.monthly_limit
    ON CONFLICT (company_id, period) DO UPDATE SET reserved = p.reserved + EXCLUDED.reserved
    WHERE greatest(p.settled, p.billed) + p.reserved + EXCLUDED.reserved
        <= (SELECT monthly_limit FROM budget_limits WHERE company_id = $1)
    RETURNING p.company_id
),
held AS (
    INSERT INTO budget_reservations (id, company_id, period, amount, expires_at)
    SELECT $3, $1, $2, $4, clock_timestamp() + make_interval(secs => $5) FROM counted
    RETURNING id
)
SELECT l.monthly_limit, EXISTS (SELECT FROM held) AS reserved
FROM (SELECT 1) AS one LEFT JOIN budget_limits l ON l.company_id = $1
"""

# Give a reservation back (the generation failed): its amount leaves `reserved`.
RELEASE = """
WITH released AS (
    DELETE FROM budget_reservations WHERE id = $1 RETURNING company_id, period, amount
)
UPDATE budget_periods p SET reserved = p.reserved - r.amount
FROM released r WHERE p.company_id = r.company_id AND p.period = r.period
"""

# The (company, period) pairs holding reservations, for the periodic fold.
HELD = "SELECT DISTINCT company_id, period FROM budget_reservations LIMIT $1"

# Fold one (company, period)'s finished reservations into its counter: those a committed
# generation settled (their worst case off `reserved`, the generation's cost onto
# `settled` of its occurredAt's period) and those expired (a request that died: off
# `reserved`). Rows a concurrent fold holds are skipped. The two periods differ only for
# a request that straddled a month's end: rows in period order.
FOLD = """
WITH done AS (
    DELETE FROM budget_reservations WHERE id IN (
        SELECT r.id FROM budget_reservations r
        WHERE r.company_id = $1 AND r.period = $2
          AND (r.expires_at <= clock_timestamp()
               OR EXISTS (SELECT FROM generations g WHERE g.reservation_id = r.id))
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, period, amount
),
changes AS (
    SELECT period, sum(settled) AS settled, sum(released) AS released FROM (
        SELECT period, 0::numeric AS settled, amount AS released FROM done
        UNION ALL
        SELECT to_char(g.created_at AT TIME ZONE 'UTC', 'YYYY-MM'), g.cost, 0
        FROM generations g JOIN done ON g.reservation_id = done.id
    ) AS change GROUP BY period
)
INSERT INTO budget_periods AS p (company_id, period, settled)
SELECT $1, period, settled FROM changes ORDER BY period
ON CONFLICT (company_id, period) DO UPDATE SET
    settled = p.settled + EXCLUDED.settled,
    reserved = p.reserved - (SELECT released FROM changes c WHERE c.period = EXCLUDED.period)
RETURNING (SELECT count(*) FROM done) AS folded
"""

# billing.price_changed.v1: versions are only ever added; a replay changes nothing.
ADD_PRICE = """
INSERT INTO budget_prices (
    price_id, company_id, price_per_10_questions, profit_margin_percent,
    effective_from, announced_at
) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (price_id) DO NOTHING
"""

# billing.budget_changed.v1: the highest revision wins, whatever the order of arrival.
SET_LIMIT = """
INSERT INTO budget_limits AS b (company_id, monthly_limit, revision) VALUES ($1, $2, $3)
ON CONFLICT (company_id) DO UPDATE SET
    monthly_limit = EXCLUDED.monthly_limit, revision = EXCLUDED.revision
WHERE b.revision < EXCLUDED.revision
"""

# billing.spend_recorded.v1: billing's total for the period only grows; keep the highest.
SET_BILLED = """
INSERT INTO budget_periods AS p (company_id, period, billed) VALUES ($1, $2, $3)
ON CONFLICT (company_id, period) DO UPDATE SET billed = greatest(p.billed, EXCLUDED.billed)
"""

# One period's counter, for operators and tests.
PERIOD = """
SELECT settled, billed, reserved,
       (SELECT count(*) FROM budget_reservations r
        WHERE r.company_id = $1 AND r.period = $2) AS reservations
FROM budget_periods WHERE company_id = $1 AND period = $2
"""


class Outcome(Enum):
    RESERVED = "reserved"
    REFUSED = "refused"
    UNLIMITED = "unlimited"


@dataclass(frozen=True)
class PeriodCounter:
    settled: Decimal
    billed: Decimal
    reserved: Decimal
    reservations: int

    @property
    def spent(self) -> Decimal:
        return max(self.settled, self.billed)


async def terms(conn: Connection, company_id: UUID) -> Terms:
    rows = await conn.fetch(TERMS, company_id)
    versions = tuple(
        PriceVersion(
            row["price_id"],
            row["company_id"],
            row["price_per_10_questions"],
            row["profit_margin_percent"],
            row["effective_from"],
            row["announced_at"],
        )
        for row in rows
        if row["price_id"] is not None
    )
    return Terms(limited=bool(rows[0]["limited"]), versions=versions)


async def reserve(
    conn: Connection,
    reservation_id: UUID,
    company_id: UUID,
    period: str,
    amount: Decimal,
    hold_seconds: float,
) -> Outcome:
    row = await conn.fetchrow(RESERVE, company_id, period, reservation_id, amount, hold_seconds)
    assert row is not None
    if row["reserved"]:
        return Outcome.RESERVED
    return Outcome.UNLIMITED if row["monthly_limit"] is None else Outcome.REFUSED


async def release(conn: Connection, reservation_id: UUID) -> None:
    await conn.execute(RELEASE, reservation_id)


async def held(conn: Connection, limit: int = 1000) -> list[tuple[UUID, str]]:
    return [(row["company_id"], row["period"]) for row in await conn.fetch(HELD, limit)]


async def fold(conn: Connection, company_id: UUID, period: str) -> int:
    """Fold one (company, period)'s settled and expired reservations; how many."""
    rows = await conn.fetch(FOLD, company_id, period)
    return int(rows[0]["folded"]) if rows else 0


async def add_price(conn: Connection, event: PriceChanged) -> None:
    await conn.execute(
        ADD_PRICE,
        event.price_id,
        None if event.is_default else event.company_id,
        event.price_per_10_questions,
        event.profit_margin_percent,
        event.effective_from,
        event.occurred_at,
    )


async def set_limit(conn: Connection, event: BudgetChanged) -> None:
    await conn.execute(SET_LIMIT, event.company_id, event.monthly_limit, event.revision)


async def set_billed(conn: Connection, event: SpendRecorded) -> None:
    await conn.execute(SET_BILLED, event.company_id, event.period, event.spent)


async def period_counter(conn: Connection, company_id: UUID, period: str) -> PeriodCounter | None:
    row = await conn.fetchrow(PERIOD, company_id, period)
    if row is None:
        return None
    return PeriodCounter(row["settled"], row["billed"], row["reserved"], row["reservations"])
