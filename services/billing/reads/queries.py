"""The read API's SQL: a company's usage rows and its summary. Never commits, always by company.

Every statement takes the company as `$1` and the period `[from, to)` as `$2`
and `$3` (NULL leaves that end open), so the period is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.servicekit.db import Connection
from services.servicekit.pagination import Cursor

# The company's rows in the period.
IN_PERIOD = """company_id = $1
  AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
  AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz)"""

# What the summary adds up for the company, its drafts, a job or a draft (so the lines agree).
SUMS = """count(*) AS generations,
    COALESCE(sum(cost), 0)::numeric AS cost,
    COALESCE(sum(question_count), 0)::bigint AS question_count,
    COALESCE(sum(prompt_tokens), 0)::bigint AS prompt_tokens,
    COALESCE(sum(completion_tokens), 0)::bigint AS completion_tokens,
    COALESCE(sum(total_tokens), 0)::bigint AS total_tokens"""

# The contract's usage row.
USAGE_COLUMNS = """
id, company_id, job_id, draft_job_id, prompt_tokens, completion_tokens, total_tokens,
question_count, cost, model_used, created_at
"""

# A page of the company's rows in the period, newest first, under the filters (NULL: none),
# after a keyset cursor.
LIST_USAGE = f"""
SELECT {USAGE_COLUMNS} FROM question_generation_usage
WHERE {IN_PERIOD}
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

# Totals of the company in the period.
SUMMARY_TOTALS = f"""
SELECT {SUMS} FROM question_generation_usage WHERE {IN_PERIOD}
"""

# Totals of its rows still held as drafts, and how many drafts hold them.
SUMMARY_DRAFT_TOTALS = f"""
SELECT count(DISTINCT draft_job_id) AS count, {SUMS}
FROM question_generation_usage
WHERE {IN_PERIOD} AND draft_job_id IS NOT NULL
"""

# One line per job, most recently used first.
SUMMARY_JOBS = f"""
SELECT job_id, {SUMS}, min(created_at) AS first_used_at, max(created_at) AS last_used_at
FROM question_generation_usage
WHERE {IN_PERIOD} AND job_id IS NOT NULL
GROUP BY job_id
ORDER BY max(created_at) DESC, job_id
"""

# One line per draft still waiting, with its whole history's first use (to tell the abandoned).
SUMMARY_DRAFTS = f"""
WITH drafts AS (
    SELECT draft_job_id, {SUMS}
    FROM question_generation_usage
    WHERE {IN_PERIOD} AND draft_job_id IS NOT NULL
    GROUP BY draft_job_id
)
SELECT d.*, seen.first_used_at, seen.last_used_at
FROM drafts d
CROSS JOIN LATERAL (
    SELECT min(created_at) AS first_used_at, max(created_at) AS last_used_at
    FROM question_generation_usage u
    WHERE u.company_id = $1 AND u.draft_job_id = d.draft_job_id
) AS seen
ORDER BY seen.first_used_at, d.draft_job_id
"""


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
class SummaryRows:
    totals: asyncpg.Record
    draft_totals: asyncpg.Record
    jobs: list[asyncpg.Record]
    drafts: list[asyncpg.Record]


async def list_usage(
    conn: Connection,
    company_id: UUID,
    within: Period,
    where: UsageFilter,
    cursor: Cursor | None,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        LIST_USAGE,
        company_id,
        within.since,
        within.until,
        where.job_id,
        where.draft_job_id,
        where.status,
        cursor.created_at if cursor else None,
        cursor.id if cursor else None,
        limit,
    )


async def get_usage(conn: Connection, company_id: UUID, usage_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(GET_USAGE, company_id, usage_id)
    return row


async def summary(conn: Connection, company_id: UUID, within: Period) -> SummaryRows:
    """Every figure of the summary; run it in one snapshot so that they agree."""
    args = (company_id, within.since, within.until)
    totals = await conn.fetchrow(SUMMARY_TOTALS, *args)
    draft_totals = await conn.fetchrow(SUMMARY_DRAFT_TOTALS, *args)
    # An aggregate without GROUP BY always answers one row.
    assert totals is not None
    assert draft_totals is not None
    return SummaryRows(
        totals=totals,
        draft_totals=draft_totals,
        jobs=await conn.fetch(SUMMARY_JOBS, *args),
        drafts=await conn.fetch(SUMMARY_DRAFTS, *args),
    )
