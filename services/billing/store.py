"""Every SQL statement of billing. Functions take a connection and never commit.

Writes are set-based: one statement per step for a whole batch of events.
Reads (at the end) serve the HTTP read API and are always scoped by company.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from contracts.events import JobCreated
from services.billing.reconciliation import KnownJob
from services.servicekit.db import Connection
from services.servicekit.pagination import Cursor

# Serialize with every writer touching the same (company, draft or job id).
LOCK = "SELECT pg_advisory_xact_lock(key) FROM unnest($1::bigint[]) AS key"

# Remember jobs; a redelivered JobCreated changes nothing.
REMEMBER_JOBS = """
INSERT INTO known_jobs (job_id, company_id, draft_job_id, created_at, event_id)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::uuid[])
ON CONFLICT (job_id) DO NOTHING
"""

# Known jobs a generation may belong to: by job id, or by the draft they came from.
FIND_JOBS = """
SELECT job_id, company_id, draft_job_id FROM known_jobs WHERE job_id = ANY($1::uuid[])
UNION
SELECT k.job_id, k.company_id, k.draft_job_id
FROM unnest($2::uuid[], $3::text[]) AS ref(company_id, draft_job_id)
JOIN known_jobs k ON k.company_id = ref.company_id AND k.draft_job_id = ref.draft_job_id
"""

# One row per event; a redelivered event inserts nothing. Returns the rows made now.
INSERT_USAGE = """
INSERT INTO question_generation_usage (
    event_id, company_id, job_id, draft_job_id, prompt_tokens, completion_tokens,
    total_tokens, question_count, cost, model_used, created_at
)
SELECT * FROM unnest(
    $1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::int[],
    $7::int[], $8::int[], $9::numeric[], $10::text[], $11::timestamptz[]
)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

# Move drafts onto their jobs: a draft held under a job's id or its draft's id.
ATTACH_DRAFTS = """
UPDATE question_generation_usage AS u
SET job_id = j.job_id, draft_job_id = NULL
FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS j(company_id, job_id, draft_job_id)
WHERE u.company_id = j.company_id
  AND u.draft_job_id IS NOT NULL
  AND u.draft_job_id = ANY(ARRAY[j.job_id::text, j.draft_job_id])
RETURNING j.job_id, u.question_count, u.cost
"""


@dataclass(frozen=True)
class UsageRow:
    event_id: UUID
    company_id: UUID
    job_id: UUID | None
    draft_job_id: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    question_count: int
    cost: Decimal
    model_used: str
    created_at: datetime


@dataclass(frozen=True)
class Attached:
    job_id: UUID
    question_count: int
    cost: Decimal


async def lock(conn: Connection, keys: Sequence[int]) -> None:
    if keys:
        await conn.execute(LOCK, list(keys))


async def remember_jobs(conn: Connection, jobs: Sequence[JobCreated]) -> None:
    if not jobs:
        return
    await conn.execute(
        REMEMBER_JOBS,
        [job.job_id for job in jobs],
        [job.company_id for job in jobs],
        [job.draft_job_id for job in jobs],
        [job.occurred_at for job in jobs],
        [job.event_id for job in jobs],
    )


async def find_jobs(
    conn: Connection, job_ids: Sequence[UUID], drafts: Sequence[tuple[UUID, str]]
) -> list[KnownJob]:
    if not job_ids and not drafts:
        return []
    rows = await conn.fetch(
        FIND_JOBS,
        list(job_ids),
        [company for company, _ in drafts],
        [draft for _, draft in drafts],
    )
    return [KnownJob(row["job_id"], row["company_id"], row["draft_job_id"]) for row in rows]


async def insert_usage(conn: Connection, rows: Sequence[UsageRow]) -> set[UUID]:
    if not rows:
        return set()
    inserted = await conn.fetch(
        INSERT_USAGE,
        [row.event_id for row in rows],
        [row.company_id for row in rows],
        [row.job_id for row in rows],
        [row.draft_job_id for row in rows],
        [row.prompt_tokens for row in rows],
        [row.completion_tokens for row in rows],
        [row.total_tokens for row in rows],
        [row.question_count for row in rows],
        [row.cost for row in rows],
        [row.model_used for row in rows],
        [row.created_at for row in rows],
    )
    return {record["event_id"] for record in inserted}


async def attach_drafts(conn: Connection, jobs: Sequence[JobCreated]) -> list[Attached]:
    if not jobs:
        return []
    rows = await conn.fetch(
        ATTACH_DRAFTS,
        [job.company_id for job in jobs],
        [job.job_id for job in jobs],
        [job.draft_job_id for job in jobs],
    )
    return [Attached(row["job_id"], row["question_count"], row["cost"]) for row in rows]


# ---------------------------------------------------------------------------
# Reads: the HTTP read API. Every statement is scoped by company ($1).
# ---------------------------------------------------------------------------

# The contract's usage row.
USAGE_COLUMNS = """
id, company_id, job_id, draft_job_id, prompt_tokens, completion_tokens, total_tokens,
question_count, cost, model_used, created_at
"""

# Rows of a company inside [from, to), under the read API's filters; NULL means no filter.
USAGE_FILTER = """
company_id = $1
AND ($2::uuid IS NULL OR job_id = $2::uuid)
AND ($3::text IS NULL OR draft_job_id = $3::text)
AND ($4::text IS NULL
     OR ($4::text = 'draft' AND draft_job_id IS NOT NULL)
     OR ($4::text = 'job' AND job_id IS NOT NULL))
AND ($5::timestamptz IS NULL OR created_at >= $5::timestamptz)
AND ($6::timestamptz IS NULL OR created_at < $6::timestamptz)
"""

# A page of usage rows, newest first, after a keyset cursor.
LIST_USAGE = f"""
SELECT {USAGE_COLUMNS} FROM question_generation_usage
WHERE {USAGE_FILTER}
  AND ($7::timestamptz IS NULL OR (created_at, id) < ($7::timestamptz, $8::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $9
"""

# One usage row of a company.
GET_USAGE = f"""
SELECT {USAGE_COLUMNS} FROM question_generation_usage WHERE company_id = $1 AND id = $2
"""

# What the summary adds up for a job, a draft or a company (its lines must agree).
USAGE_SUMS = """count(*) AS generations,
    sum(cost)::numeric AS cost,
    sum(question_count)::bigint AS question_count,
    sum(prompt_tokens)::bigint AS prompt_tokens,
    sum(completion_tokens)::bigint AS completion_tokens,
    sum(total_tokens)::bigint AS total_tokens"""

# Totals of a company in [from, to), and of its rows still held as drafts.
SUMMARY_TOTALS = """
SELECT
    count(*) AS generations,
    COALESCE(sum(cost), 0)::numeric AS cost,
    COALESCE(sum(question_count), 0)::bigint AS question_count,
    COALESCE(sum(prompt_tokens), 0)::bigint AS prompt_tokens,
    COALESCE(sum(completion_tokens), 0)::bigint AS completion_tokens,
    COALESCE(sum(total_tokens), 0)::bigint AS total_tokens,
    count(DISTINCT draft_job_id) AS draft_count,
    count(*) FILTER (WHERE draft_job_id IS NOT NULL) AS draft_generations,
    COALESCE(sum(cost) FILTER (WHERE draft_job_id IS NOT NULL), 0)::numeric AS draft_cost,
    COALESCE(sum(question_count) FILTER (WHERE draft_job_id IS NOT NULL), 0)::bigint
        AS draft_question_count,
    COALESCE(sum(prompt_tokens) FILTER (WHERE draft_job_id IS NOT NULL), 0)::bigint
        AS draft_prompt_tokens,
    COALESCE(sum(completion_tokens) FILTER (WHERE draft_job_id IS NOT NULL), 0)::bigint
        AS draft_completion_tokens,
    COALESCE(sum(total_tokens) FILTER (WHERE draft_job_id IS NOT NULL), 0)::bigint
        AS draft_total_tokens
FROM question_generation_usage
WHERE company_id = $1
  AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
  AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz)
"""

# One line per job of a company in [from, to), most recently used first.
SUMMARY_JOBS = f"""
SELECT
    job_id,
    {USAGE_SUMS},
    min(created_at) AS first_used_at,
    max(created_at) AS last_used_at
FROM question_generation_usage
WHERE company_id = $1 AND job_id IS NOT NULL
  AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
  AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz)
GROUP BY job_id
ORDER BY max(created_at) DESC, job_id
"""

# One line per draft still waiting, with its whole history's first use (to tell the abandoned).
SUMMARY_DRAFTS = f"""
WITH drafts AS (
    SELECT
        draft_job_id,
        {USAGE_SUMS}
    FROM question_generation_usage
    WHERE company_id = $1 AND draft_job_id IS NOT NULL
      AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
      AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz)
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
class UsageFilter:
    """What the read API narrows usage rows by; `None` leaves a dimension open."""

    job_id: UUID | None = None
    draft_job_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_usage(
    conn: Connection, company_id: UUID, where: UsageFilter, cursor: Cursor | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        LIST_USAGE,
        company_id,
        where.job_id,
        where.draft_job_id,
        where.status,
        where.since,
        where.until,
        cursor.created_at if cursor else None,
        cursor.id if cursor else None,
        limit,
    )


async def get_usage(conn: Connection, company_id: UUID, usage_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(GET_USAGE, company_id, usage_id)
    return row


async def summary_totals(
    conn: Connection, company_id: UUID, since: datetime | None, until: datetime | None
) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(SUMMARY_TOTALS, company_id, since, until)
    assert row is not None  # an aggregate without GROUP BY always answers one row
    return row


async def summary_jobs(
    conn: Connection, company_id: UUID, since: datetime | None, until: datetime | None
) -> list[asyncpg.Record]:
    return await conn.fetch(SUMMARY_JOBS, company_id, since, until)


async def summary_drafts(
    conn: Connection, company_id: UUID, since: datetime | None, until: datetime | None
) -> list[asyncpg.Record]:
    return await conn.fetch(SUMMARY_DRAFTS, company_id, since, until)
