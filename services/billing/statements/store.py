"""Statements' SQL: the period lock, the close, statement reads, adjustments. Never commits.

How a close and the ledger's writers never miss each other
-----------------------------------------------------------
Every billing period has an advisory lock (`PERIOD_LOCK_SPACE`, the period as key).
A ledger batch takes it SHARED for each period its generations fall in (and the
period of now, where late ones go), then reads which of them are closed. A close
takes it EXCLUSIVE, then marks the period closed and copies its statements.

- A batch that locked first holds the close back until it commits; the close's
  copy is a later statement of a READ COMMITTED transaction, so it sees the
  batch's rows: they are in the closed statement.
- A batch that comes while the close holds the lock waits, then reads the period
  as closed (its read is a statement after the lock was granted): its
  generations are billed late, in a later period, and are not in the copy.

So every generation is either in the closed statement or late in an open one:
never both, never neither. Shared locks do not block each other, so batches run
side by side as before, and a new shared request queues behind a waiting close
(no starvation). The locks live in memory: no row of a hot table is written for
them. They never deadlock with the ledger's (company, id) locks: a close takes no
other lock, and a batch takes its period locks in one sorted statement.
Both transactions must be READ COMMITTED (the default): under REPEATABLE READ the
snapshot would be taken before the lock is granted.

The close copies in ONE statement, so its figures come from one snapshot: a
draft reconciled onto its job during the close is counted once, as draft or as
job. It reads the ledger's rollups (a row per company and per job of the
period, kept in the usage rows' own transactions), so its time grows with the
companies and jobs of the period, not with its usage rows; no company passes
through Python, so its memory does not grow at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from contracts.events import QuestionsGenerated
from services.billing.ledger.store import title_of
from services.billing.statements.rules import (
    PERIOD_LOCK_SPACE,
    Billed,
    LineCursor,
    Period,
    bill_in,
)
from services.servicekit.db import Connection
from services.servicekit.pagination import Page, fetch_page

# Writers of usage or adjustments in these periods: shared among themselves, not with a close.
SHARE_PERIODS = "SELECT pg_advisory_xact_lock_shared($1::int, key) FROM unnest($2::int[]) AS key"

# The close: alone in its period until it commits.
LOCK_PERIOD = "SELECT pg_advisory_xact_lock($1::int, $2::int)"

# Which of these periods are closed.
CLOSED_AMONG = "SELECT period FROM closed_periods WHERE period = ANY($1::text[])"

# When a period was closed (no row: it is open).
CLOSED_AT = "SELECT closed_at FROM closed_periods WHERE period = $1"

# Mark a period closed.
MARK_CLOSED = "INSERT INTO closed_periods (period, closed_at) VALUES ($1, $2)"

# Where a statement's figures come from, for every company of period $1 (`ALL`) or for
# company $2 alone (`ONE`): the ledger's rollups per (company, period) and per (company,
# period, job), kept in the same transaction as the usage rows they add up; the drafts
# still waiting, counted from their rows; the adjustments.
ALL = "period = $1"
ONE = "period = $1 AND company_id = $2"


def _totals(where: str) -> str:
    return f"""
    SELECT company_id, generations, question_count, cost, draft_question_count, draft_cost,
        late_generations AS late_count, late_cost
    FROM rollup_periods WHERE {where}"""


def _job_lines(where: str) -> str:
    return f"""
    SELECT company_id, job_id, question_count, cost
    FROM rollup_job_periods WHERE {where}"""


def _drafts(where: str) -> str:
    # The drafts still waiting: from the rows (usage_drafts_by_period holds only those).
    return f"""
    SELECT company_id, count(DISTINCT draft_job_id) AS draft_count
    FROM question_generation_usage WHERE {where} AND draft_job_id IS NOT NULL
    GROUP BY company_id"""


def _adjusted(where: str) -> str:
    return f"""
    SELECT company_id, count(*) AS adjustment_count, sum(amount) AS adjustment_total
    FROM adjustments WHERE {where}
    GROUP BY company_id"""


def _credited(where: str) -> str:
    # Credits applied to the period's usage: kept per (company, period) by the draws.
    return f"""
    SELECT company_id, applied AS credits_applied
    FROM credit_applied_periods WHERE {where}"""


# Freeze every company's statement of a period: its lines, then its figures and
# adjustments. One statement, so one snapshot for all of it (see the module's note).
FREEZE = f"""
WITH lines AS (
    INSERT INTO statement_lines (period, company_id, job_id, question_count, cost)
    SELECT $1, company_id, job_id, question_count, cost FROM ({_job_lines(ALL)}) AS l
    ORDER BY company_id, cost DESC, job_id  -- the index's order: appended, not scattered
),
written AS (
    INSERT INTO statements (
        period, company_id, generations, question_count, cost, draft_count,
        draft_question_count, draft_cost, late_count, late_cost,
        adjustment_count, adjustment_total, credits_applied
    )
    SELECT $1, company_id,
        COALESCE(t.generations, 0), COALESCE(t.question_count, 0), COALESCE(t.cost, 0),
        COALESCE(d.draft_count, 0), COALESCE(t.draft_question_count, 0),
        COALESCE(t.draft_cost, 0), COALESCE(t.late_count, 0), COALESCE(t.late_cost, 0),
        COALESCE(a.adjustment_count, 0), COALESCE(a.adjustment_total, 0),
        COALESCE(c.credits_applied, 0)
    FROM ({_totals(ALL)}) AS t
    FULL JOIN ({_adjusted(ALL)}) AS a USING (company_id)
    LEFT JOIN ({_drafts(ALL)}) AS d USING (company_id)
    LEFT JOIN ({_credited(ALL)}) AS c USING (company_id)
    ORDER BY company_id
    RETURNING 1
)
SELECT count(*) FROM written
"""

# A company's statement of a closed period, as frozen (no row: nothing in it).
FROZEN_FIGURES = """
SELECT generations, question_count, cost, draft_count, draft_question_count, draft_cost,
       late_count, late_cost, adjustment_total, credits_applied
FROM statements WHERE period = $1 AND company_id = $2
"""

# A page of lines by cost descending then job, after the line (cost $3, job $4).
AFTER_LINE = """($3::numeric IS NULL OR cost < $3::numeric
       OR (cost = $3::numeric AND job_id > $4::uuid))"""


# A line's job title: a name for people, read as it is now (not frozen with the figures;
# a job known untitled at the close shows its title once an event names it).
def _line_title(job_id: str) -> str:
    return f"{title_of(job_id, '$2')} AS job_title"


# A page ($5 lines) of its frozen lines.
FROZEN_LINES = f"""
SELECT job_id, question_count, cost, {_line_title("statement_lines.job_id")}
FROM statement_lines
WHERE period = $1 AND company_id = $2 AND {AFTER_LINE}
ORDER BY cost DESC, job_id
LIMIT $5
"""

# A company's statement of an open period, as it stands.
LIVE_FIGURES = f"""
SELECT COALESCE(t.generations, 0) AS generations,
    COALESCE(t.question_count, 0) AS question_count,
    COALESCE(t.cost, 0) AS cost,
    COALESCE(d.draft_count, 0) AS draft_count,
    COALESCE(t.draft_question_count, 0) AS draft_question_count,
    COALESCE(t.draft_cost, 0) AS draft_cost,
    COALESCE(t.late_count, 0) AS late_count,
    COALESCE(t.late_cost, 0) AS late_cost,
    COALESCE(a.adjustment_total, 0) AS adjustment_total,
    COALESCE(c.credits_applied, 0) AS credits_applied
FROM (SELECT) AS one
LEFT JOIN ({_totals(ONE)}) AS t ON true
LEFT JOIN ({_drafts(ONE)}) AS d ON true
LEFT JOIN ({_adjusted(ONE)}) AS a ON true
LEFT JOIN ({_credited(ONE)}) AS c ON true
"""

# A page ($5 lines) of its lines as they stand.
LIVE_LINES = f"""
SELECT job_id, question_count, cost, {_line_title("l.job_id")}
FROM ({_job_lines(ONE)}) AS l
WHERE {AFTER_LINE}
ORDER BY cost DESC, job_id
LIMIT $5
"""

# The contract's adjustment.
ADJUSTMENT_COLUMNS = (
    "id, company_id, period, amount, reason, usage_id, job_id, created_by, created_at"
)

# A company's adjustments of a period, in the order they were made.
LIST_ADJUSTMENTS = f"""
SELECT {ADJUSTMENT_COLUMNS} FROM adjustments
WHERE company_id = $1 AND period = $2
ORDER BY created_at, id
"""

# Append an adjustment.
INSERT_ADJUSTMENT = f"""
INSERT INTO adjustments (
    id, company_id, period, amount, reason, usage_id, job_id, created_by, created_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {ADJUSTMENT_COLUMNS}
"""

# Is this usage row the company's?
OWNS_USAGE = (
    "SELECT EXISTS (SELECT 1 FROM question_generation_usage WHERE id = $1 AND company_id = $2)"
)

# Is this a job billing knows of the company (from its JobCreated, or usage on it)?
OWNS_JOB = """
SELECT EXISTS (SELECT 1 FROM known_jobs WHERE job_id = $1 AND company_id = $2)
    OR EXISTS (SELECT 1 FROM question_generation_usage WHERE company_id = $2 AND job_id = $1)
"""


@dataclass(frozen=True)
class Figures:
    """What a company's statement adds up in a period."""

    generations: int = 0
    question_count: int = 0
    cost: Decimal = Decimal("0")
    draft_count: int = 0
    draft_question_count: int = 0
    draft_cost: Decimal = Decimal("0")
    late_count: int = 0
    late_cost: Decimal = Decimal("0")
    adjustment_total: Decimal = Decimal("0")
    credits_applied: Decimal = Decimal("0")  # prepaid credits drawn by the period's usage


@dataclass(frozen=True)
class Line:
    job_id: UUID
    question_count: int
    cost: Decimal
    job_title: str | None = None


@dataclass(frozen=True)
class Adjustment:
    id: UUID
    company_id: UUID
    period: Period
    amount: Decimal
    reason: str
    usage_id: UUID | None
    job_id: UUID | None
    created_by: str | None
    created_at: datetime


# ---------------------------------------------------------------------------
# The period lock
# ---------------------------------------------------------------------------


async def share_periods(conn: Connection, periods: Sequence[Period]) -> set[Period]:
    """Lock the periods against a close until this transaction ends; the closed ones."""
    keys = sorted({period.lock_key for period in periods})
    await conn.execute(SHARE_PERIODS, PERIOD_LOCK_SPACE, keys)
    rows = await conn.fetch(CLOSED_AMONG, [str(period) for period in periods])
    return {Period.parse(row["period"]) for row in rows}


async def bill_periods(
    conn: Connection, events: Sequence[QuestionsGenerated], recorded_at: datetime
) -> dict[UUID, Billed]:
    """The ledger's step: the period (and lateness) of each generation of the batch."""
    if not events:
        return {}
    occurred = {event.event_id: Period.of(event.occurred_at) for event in events}
    closed = await share_periods(conn, [*set(occurred.values()), Period.of(recorded_at)])
    return {event_id: bill_in(period, closed, recorded_at) for event_id, period in occurred.items()}


async def lock_for_close(conn: Connection, period: Period) -> None:
    """Wait for every writer of the period to commit; hold new ones until this one does."""
    await conn.execute(LOCK_PERIOD, PERIOD_LOCK_SPACE, period.lock_key)


async def closed_at(conn: Connection, period: Period) -> datetime | None:
    value: datetime | None = await conn.fetchval(CLOSED_AT, str(period))
    return value


async def freeze(conn: Connection, period: Period, at: datetime) -> int:
    """Mark the period closed and copy every company's statement; how many were written."""
    await conn.execute(MARK_CLOSED, str(period), at)
    written: int = await conn.fetchval(FREEZE, str(period))
    return written


# ---------------------------------------------------------------------------
# Statement reads: always one company's ($2) statement of one period ($1)
# ---------------------------------------------------------------------------


def _figures(row: asyncpg.Record | None) -> Figures:
    return Figures(**dict(row)) if row is not None else Figures()


def _page_args(after: LineCursor | None) -> tuple[Decimal | None, UUID | None]:
    return (after.cost, after.job_id) if after else (None, None)


async def frozen_statement(
    conn: Connection, period: Period, company_id: UUID, after: LineCursor | None, limit: int
) -> tuple[Figures, Page[Line]]:
    figures = await conn.fetchrow(FROZEN_FIGURES, str(period), company_id)
    rows = await fetch_page(
        conn, FROZEN_LINES, str(period), company_id, *_page_args(after), limit=limit
    )
    return _figures(figures), rows.map(lambda row: Line(**dict(row)))


async def live_statement(
    conn: Connection, period: Period, company_id: UUID, after: LineCursor | None, limit: int
) -> tuple[Figures, Page[Line]]:
    figures = await conn.fetchrow(LIVE_FIGURES, str(period), company_id)
    rows = await fetch_page(
        conn, LIVE_LINES, str(period), company_id, *_page_args(after), limit=limit
    )
    return _figures(figures), rows.map(lambda row: Line(**dict(row)))


# ---------------------------------------------------------------------------
# Adjustments
# ---------------------------------------------------------------------------


def _adjustment(row: asyncpg.Record) -> Adjustment:
    return Adjustment(**{**dict(row), "period": Period.parse(row["period"])})


async def list_adjustments(conn: Connection, company_id: UUID, period: Period) -> list[Adjustment]:
    rows = await conn.fetch(LIST_ADJUSTMENTS, company_id, str(period))
    return [_adjustment(row) for row in rows]


async def owns_usage(conn: Connection, company_id: UUID, usage_id: UUID) -> bool:
    return bool(await conn.fetchval(OWNS_USAGE, usage_id, company_id))


async def owns_job(conn: Connection, company_id: UUID, job_id: UUID) -> bool:
    return bool(await conn.fetchval(OWNS_JOB, job_id, company_id))


async def insert_adjustment(conn: Connection, adjustment: Adjustment) -> Adjustment:
    row = await conn.fetchrow(
        INSERT_ADJUSTMENT,
        adjustment.id,
        adjustment.company_id,
        str(adjustment.period),
        adjustment.amount,
        adjustment.reason,
        adjustment.usage_id,
        adjustment.job_id,
        adjustment.created_by,
        adjustment.created_at,
    )
    assert row is not None  # INSERT ... RETURNING of one row
    return _adjustment(row)
