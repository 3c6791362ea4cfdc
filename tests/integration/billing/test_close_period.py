"""Closing a period on the real database: frozen figures equal the rows, and stay frozen."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest

from services.billing.rollups import store as rollups
from services.billing.statements import handlers
from services.billing.statements.handlers import AdjustmentOrder, PeriodNotEnded
from services.billing.statements.rules import Period
from services.billing.statements.store import Figures

MONTH = Period(2026, 3)

# Usage rows straight into the ledger: per company, jobs and drafts, some late from earlier.
LOAD = """
INSERT INTO question_generation_usage (
    event_id, company_id, job_id, draft_job_id, question_count, cost, created_at, period, late
)
SELECT gen_random_uuid(), c.company_id,
       CASE WHEN n % 3 = 0 THEN NULL ELSE j.jobs[1 + n % 4] END,
       CASE WHEN n % 3 = 0 THEN 'draft-' || (n % 2) END,
       n % 7 + 1, ((n % 7 + 1) * 0.01)::numeric(10, 4),
       $2::timestamptz + make_interval(mins => n) - CASE WHEN n % 5 = 0 THEN interval '40 days'
                                                          ELSE interval '0' END,
       $3, n % 5 = 0
FROM unnest($1::uuid[]) AS c(company_id)
CROSS JOIN LATERAL (SELECT ARRAY[gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
                                 gen_random_uuid()] AS jobs
                   WHERE c.company_id IS NOT NULL) AS j
CROSS JOIN generate_series(1, 25) AS n
"""

# What a statement must say, straight from the rows.
RAW = """
SELECT count(*) AS generations, sum(question_count) AS question_count, sum(cost) AS cost,
       count(DISTINCT draft_job_id) AS draft_count,
       COALESCE(sum(question_count) FILTER (WHERE draft_job_id IS NOT NULL), 0)
           AS draft_question_count,
       COALESCE(sum(cost) FILTER (WHERE draft_job_id IS NOT NULL), 0) AS draft_cost,
       count(*) FILTER (WHERE late) AS late_count,
       COALESCE(sum(cost) FILTER (WHERE late), 0) AS late_cost
FROM question_generation_usage WHERE company_id = $1 AND period = $2
"""


async def load(pool: asyncpg.Pool, companies: list[uuid.UUID]) -> None:
    """Rows written by hand, and the rollups the ledger would have kept for them."""
    await pool.execute(LOAD, companies, MONTH.start + timedelta(days=2), str(MONTH))
    await resum(pool, companies)


async def resum(pool: asyncpg.Pool, companies: list[uuid.UUID]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await rollups.rebuild(conn, companies)


async def raw(pool: asyncpg.Pool, company: uuid.UUID, period: Period) -> Figures:
    row = await pool.fetchrow(RAW, company, str(period))
    assert row is not None
    return Figures(**dict(row))


async def test_a_close_freezes_what_the_rows_say(pool: asyncpg.Pool) -> None:
    companies = [uuid.uuid4() for _ in range(30)]
    await load(pool, companies)
    async with pool.acquire() as conn:
        order = AdjustmentOrder(companies[0], Decimal("-1.2500"), "credit", None, None, "ops")
        await handlers.post_adjustment(conn, order, MONTH.start + timedelta(days=3))
    live = {
        company: await handlers.read_statement(pool, company, MONTH, None, 10)
        for company in companies
    }

    with pytest.raises(PeriodNotEnded):
        await handlers.close_period(pool, MONTH, MONTH.end - timedelta(microseconds=1))
    closed = await handlers.close_period(pool, MONTH, MONTH.end)
    assert closed.statements == len(companies)

    for company in companies:
        expected = await raw(pool, company, MONTH)
        view = await handlers.read_statement(pool, company, MONTH, None, 10)
        adjusted = Decimal("-1.2500") if company == companies[0] else Decimal(0)
        assert view.figures == Figures(**{**expected.__dict__, "adjustment_total": adjusted})
        assert view.figures == live[company].figures
        assert view.lines == live[company].lines
        assert view.closed_at == MONTH.end
        assert (
            sum(line.cost for line in view.lines.items) + view.figures.draft_cost
            == view.figures.cost
        )
    assert (await handlers.read_statement(pool, companies[0], MONTH, None, 10)).total == (
        live[companies[0]].figures.cost - Decimal("1.2500")
    )

    # Later: every draft of the month reconciled (rows and rollups), and a second close.
    frozen = {
        company: await handlers.read_statement(pool, company, MONTH, None, 10)
        for company in companies
    }
    await pool.execute(
        "UPDATE question_generation_usage SET job_id = gen_random_uuid(), draft_job_id = NULL"
        " WHERE draft_job_id IS NOT NULL"
    )
    await resum(pool, companies)
    again = await handlers.close_period(pool, MONTH, MONTH.end + timedelta(days=9))
    assert (again.closed_at, again.statements) == (MONTH.end, None)
    for company in companies:
        assert await handlers.read_statement(pool, company, MONTH, None, 10) == frozen[company]


async def test_a_company_with_only_an_adjustment_has_a_statement(pool: asyncpg.Pool) -> None:
    company = uuid.uuid4()
    async with pool.acquire() as conn:
        order = AdjustmentOrder(company, Decimal("5"), "setup fee", None, None, "ops")
        await handlers.post_adjustment(conn, order, MONTH.start)
    assert (await handlers.close_period(pool, MONTH, MONTH.end)).statements == 1
    view = await handlers.read_statement(pool, company, MONTH, None, 10)
    assert (view.figures.cost, view.total, len(view.adjustments)) == (Decimal(0), Decimal(5), 1)


async def test_an_adjustment_after_a_close_lands_in_the_next_period(pool: asyncpg.Pool) -> None:
    company = uuid.uuid4()
    await handlers.close_period(pool, MONTH, MONTH.end)
    async with pool.acquire() as conn:
        # A clock behind the closer's still never writes into the closed month.
        order = AdjustmentOrder(company, Decimal("1"), "late fee", None, None, "ops")
        adjustment = await handlers.post_adjustment(conn, order, MONTH.end - timedelta(seconds=1))
    assert adjustment.period == MONTH.next()


async def test_the_audit_trail_and_frozen_statements_cannot_be_rewritten(
    pool: asyncpg.Pool,
) -> None:
    company = uuid.uuid4()
    async with pool.acquire() as conn:
        order = AdjustmentOrder(company, Decimal("1"), "fee", None, None, "ops")
        await handlers.post_adjustment(conn, order, MONTH.start)
    await handlers.close_period(pool, MONTH, MONTH.end)
    for statement in (
        "UPDATE adjustments SET amount = 2",
        "DELETE FROM adjustments",
        "TRUNCATE adjustments",
        "UPDATE statements SET cost = 0",
        "DELETE FROM closed_periods",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute(statement)
