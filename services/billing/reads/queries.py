"""The read API's SQL. Never commits; every statement is scoped by the company (`$1`).

Usage rows are read by index, a page at a time. Every sum comes from the
rollups (services/billing/rollups/), kept in the ledger's transactions: a
range `[from, to)` is added up from the daily rollups over the whole UTC days
it covers, plus the usage rows of the parts of days at its edges
(`rules.cut_into_days`), so the figures are exact whatever the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from services.billing.ledger.store import title_of
from services.billing.reads.rules import DayCut
from services.billing.rollups.store import SUMS
from services.servicekit.db import Connection
from services.servicekit.pagination import Cursor, Page, fetch_page

# The contract's usage row, with its job's title (NULL for a draft or an untitled job);
# for statements scoped by the company ($1).
USAGE_COLUMNS = f"""
id, company_id, job_id, draft_job_id, prompt_tokens, completion_tokens, total_tokens,
question_count, cost, model_used, created_at, period, price_id,
{title_of("question_generation_usage.job_id", "$1")} AS job_title
"""

# A page of the company's rows in `[$2, $3)`, newest first, under the filters (NULL: none),
# after a keyset cursor; $9 rows.
LIST_USAGE = f"""
SELECT {USAGE_COLUMNS} FROM question_generation_usage
WHERE company_id = $1
  AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
  AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz)
  AND ($4::uuid IS NULL OR job_id = $4::uuid)
  AND ($5::text IS NULL OR draft_job_id = $5::text)
  AND ($6::text IS NULL
       OR ($6::text = 'draft' AND draft_job_id IS NOT NULL)
       OR ($6::text = 'job' AND job_id IS NOT NULL))
  AND ($7::timestamptz IS NULL OR (created_at, id) < ($7::timestamptz, $8::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $9
"""

# One usage row of a company.
GET_USAGE = f"""
SELECT {USAGE_COLUMNS} FROM question_generation_usage WHERE company_id = $1 AND id = $2
"""

SUM_COLUMNS = ", ".join(SUMS)


def _added_up(prefix: str = "") -> str:
    return ",\n    ".join(
        f"COALESCE(sum({prefix}{name}), 0)::{'numeric' if name == 'cost' else 'bigint'}"
        f" AS {prefix}{name}"
        for name in SUMS
    )


# The usage rows of the range's edges: `[$4, $5)` and `[$6, $7)`, NULL for none.
EDGE_ROWS = """
    SELECT * FROM question_generation_usage
    WHERE company_id = $1 AND created_at >= $4::timestamptz AND created_at < $5::timestamptz
    UNION ALL
    SELECT * FROM question_generation_usage
    WHERE company_id = $1 AND created_at >= $6::timestamptz AND created_at < $7::timestamptz
"""
# The range's whole days: `[$2, $3)`, NULL for open.
WHOLE_DAYS = "($2::date IS NULL OR day >= $2::date) AND ($3::date IS NULL OR day < $3::date)"

# Totals of the company in the range, and of its rows still held as drafts.
SUMMARY_TOTALS = f"""
SELECT {_added_up()},
    {_added_up("draft_")}
FROM (
    SELECT {SUM_COLUMNS},
        draft_generations, draft_question_count, draft_cost, draft_prompt_tokens,
        draft_completion_tokens, draft_total_tokens
    FROM rollup_days WHERE company_id = $1 AND {WHOLE_DAYS}
    UNION ALL
    SELECT 1, question_count, cost, prompt_tokens, completion_tokens, total_tokens,
        d, d * question_count, d * cost, d * prompt_tokens, d * completion_tokens, d * total_tokens
    FROM ({EDGE_ROWS}) AS edge
    CROSS JOIN LATERAL (SELECT (draft_job_id IS NOT NULL)::int AS d) AS is_draft
) AS parts
"""

# How many open drafts have usage in `[$2, $3)` (NULL: open), and how many of them were
# first used before $4 (abandoned). A draft used only inside the range counts from its
# rollup; one used across an end of it, only if one of its rows falls inside.
SUMMARY_DRAFT_COUNT = """
SELECT count(*) AS count, count(*) FILTER (WHERE d.first_used_at < $4::timestamptz) AS abandoned
FROM rollup_drafts d
WHERE d.company_id = $1
  AND ($2::timestamptz IS NULL OR d.last_used_at >= $2::timestamptz)
  AND ($3::timestamptz IS NULL OR d.first_used_at < $3::timestamptz)
  AND (
      (($2::timestamptz IS NULL OR d.first_used_at >= $2::timestamptz)
       AND ($3::timestamptz IS NULL OR d.last_used_at < $3::timestamptz))
      OR EXISTS (
          SELECT 1 FROM question_generation_usage u
          WHERE u.company_id = $1 AND u.draft_job_id = d.draft_job_id
            AND ($2::timestamptz IS NULL OR u.created_at >= $2::timestamptz)
            AND ($3::timestamptz IS NULL OR u.created_at < $3::timestamptz))
  )
"""

JOB_LINE = f"job_id, {SUM_COLUMNS}, first_used_at, last_used_at"
# After the cursor's (cost $10, job $11) in the order cost descending, then job.
AFTER_JOB = (
    "($10::numeric IS NULL OR cost < $10::numeric OR (cost = $10::numeric AND job_id > $11::uuid))"
)

# One page ($12 lines) of the company's jobs in the range `[$8, $9)`, by cost descending,
# each with its title (looked up for the page's lines only).
# A job used only inside the range is its all-time line (one index scan by cost); a job
# the range's start or end cuts through is added up from its days and the edge rows.
SUMMARY_JOBS = f"""
WITH inside AS (
    SELECT {JOB_LINE} FROM rollup_jobs
    WHERE company_id = $1
      AND ($8::timestamptz IS NULL OR first_used_at >= $8::timestamptz)
      AND ($9::timestamptz IS NULL OR last_used_at < $9::timestamptz)
      AND {AFTER_JOB}
    ORDER BY cost DESC, job_id
    LIMIT $12
),
cut AS (
    SELECT job_id FROM rollup_jobs
    WHERE company_id = $1 AND first_used_at < $8::timestamptz AND last_used_at >= $8::timestamptz
      AND ($9::timestamptz IS NULL OR first_used_at < $9::timestamptz)
    UNION
    SELECT job_id FROM rollup_jobs
    WHERE company_id = $1 AND first_used_at < $9::timestamptz AND last_used_at >= $9::timestamptz
      AND ($8::timestamptz IS NULL OR last_used_at >= $8::timestamptz)
),
whole_days AS (
    -- An aggregate per job (not a join), so each is one index range of that job's days.
    SELECT cut.job_id, whole.*
    FROM cut
    CROSS JOIN LATERAL (
        SELECT {_added_up()},
            min(first_used_at) AS first_used_at, max(last_used_at) AS last_used_at
        FROM rollup_job_days
        WHERE company_id = $1 AND job_id = cut.job_id AND {WHOLE_DAYS}
    ) AS whole
),
edges AS (
    SELECT e.job_id, 1 AS generations, question_count, cost, prompt_tokens, completion_tokens,
        total_tokens, created_at AS first_used_at, created_at AS last_used_at
    FROM ({EDGE_ROWS}) AS e JOIN cut USING (job_id)
),
cut_lines AS (
    SELECT job_id, {_added_up()},
        min(first_used_at) AS first_used_at, max(last_used_at) AS last_used_at
    FROM (SELECT * FROM whole_days UNION ALL SELECT * FROM edges) AS parts
    GROUP BY job_id
    HAVING sum(generations) > 0
)
SELECT page.*, {title_of("page.job_id", "$1")} AS job_title FROM (
    SELECT {JOB_LINE} FROM (
        SELECT * FROM inside
        UNION ALL
        SELECT {JOB_LINE} FROM cut_lines WHERE {AFTER_JOB}
    ) AS lines
    ORDER BY cost DESC, job_id
    LIMIT $12
) AS page
ORDER BY cost DESC, job_id
"""

# A page of the company's open drafts, oldest first use first, after a keyset cursor
# ($3, $4); $2 true: only those first used before $5 (abandoned), false: only the others.
LIST_DRAFTS = f"""
SELECT draft_job_id, {SUM_COLUMNS}, first_used_at, last_used_at,
    first_used_at < $5::timestamptz AS abandoned
FROM rollup_drafts
WHERE company_id = $1
  AND ($2::boolean IS NULL OR (first_used_at < $5::timestamptz) = $2::boolean)
  AND ($3::timestamptz IS NULL OR (first_used_at, draft_job_id) > ($3::timestamptz, $4::text))
ORDER BY first_used_at, draft_job_id
LIMIT $6
"""

# One line per UTC day with usage in `[$2, $3]`, oldest first.
DAILY = """
SELECT day, generations, question_count, cost, prompt_tokens, completion_tokens, total_tokens
FROM rollup_days
WHERE company_id = $1 AND day >= $2::date AND day <= $3::date AND generations > 0
ORDER BY day
"""


# Inside the caller's transaction only.
CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"


@dataclass(frozen=True)
class Period:
    """`[since, until)`; either end may be open."""

    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class UsageFilter:
    """What the read API narrows usage rows by; `None` leaves a dimension open."""

    job_id: UUID | None = None
    draft_job_id: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class JobsAfter:
    """The keyset of the summary's job lines: after this cost and job (None: from the top)."""

    cost: Decimal | None = None
    job_id: UUID | None = None


@dataclass(frozen=True)
class SummaryRows:
    totals: asyncpg.Record
    drafts: asyncpg.Record
    jobs: Page[asyncpg.Record]


async def list_usage(
    conn: Connection,
    company_id: UUID,
    within: Period,
    where: UsageFilter,
    cursor: Cursor | None,
    limit: int,
) -> Page[asyncpg.Record]:
    return await fetch_page(
        conn,
        LIST_USAGE,
        company_id,
        within.since,
        within.until,
        where.job_id,
        where.draft_job_id,
        where.status,
        cursor.created_at if cursor else None,
        cursor.id if cursor else None,
        limit=limit,
    )


async def get_usage(conn: Connection, company_id: UUID, usage_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(GET_USAGE, company_id, usage_id)
    return row


async def summary(
    conn: Connection,
    company_id: UUID,
    within: Period,
    cut: DayCut,
    after: JobsAfter,
    limit: int,
    abandoned_before: datetime,
) -> SummaryRows:
    """Every figure of the summary; run it in one snapshot so that they agree."""
    # Planned for these very values: a generic plan cannot tell an open range from a day.
    await conn.execute(CUSTOM_PLANS)
    days = (company_id, cut.first_day, cut.end_day, *cut.edge(0), *cut.edge(1))
    totals = await conn.fetchrow(SUMMARY_TOTALS, *days)
    drafts = await conn.fetchrow(
        SUMMARY_DRAFT_COUNT, company_id, within.since, within.until, abandoned_before
    )
    # An aggregate without GROUP BY always answers one row.
    assert totals is not None
    assert drafts is not None
    jobs = await fetch_page(
        conn, SUMMARY_JOBS, *days, within.since, within.until, after.cost, after.job_id, limit=limit
    )
    return SummaryRows(totals=totals, drafts=drafts, jobs=jobs)


async def list_drafts(
    conn: Connection,
    company_id: UUID,
    abandoned: bool | None,
    after: tuple[datetime, str] | None,
    limit: int,
    abandoned_before: datetime,
) -> Page[asyncpg.Record]:
    return await fetch_page(
        conn,
        LIST_DRAFTS,
        company_id,
        abandoned,
        after[0] if after else None,
        after[1] if after else None,
        abandoned_before,
        limit=limit,
    )


async def daily(
    conn: Connection, company_id: UUID, first: date, last: date
) -> list[asyncpg.Record]:
    return await conn.fetch(DAILY, company_id, first, last)
