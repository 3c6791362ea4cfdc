"""The ledger's SQL. Functions take a connection and never commit: the caller owns the transaction.

Set-based: one statement per step for a whole batch of events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from contracts.events import JobCreated
from services.billing.ledger.rules import KnownJob
from services.servicekit.db import Connection

# Serialize with every writer touching the same (company, draft or job id).
LOCK = "SELECT pg_advisory_xact_lock(key) FROM unnest($1::bigint[]) AS key"

# Remember jobs; a redelivered JobCreated changes nothing. A job known without a title
# (its JobCreated came before events carried one) takes the first title an event of its
# company names; a title once known stays. One row per job of the batch (the titled one
# first): an upsert may not touch the same row twice in one statement.
REMEMBER_JOBS = """
INSERT INTO known_jobs (job_id, company_id, draft_job_id, created_at, event_id, title)
SELECT DISTINCT ON (job_id) job_id, company_id, draft_job_id, created_at, event_id, title
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::uuid[], $6::text[])
    WITH ORDINALITY AS job(job_id, company_id, draft_job_id, created_at, event_id, title, n)
ORDER BY job_id, title IS NULL, n
ON CONFLICT (job_id) DO UPDATE SET title = EXCLUDED.title
WHERE known_jobs.title IS NULL AND EXCLUDED.title IS NOT NULL
  AND known_jobs.company_id = EXCLUDED.company_id
"""


def title_of(job_id: str, company_id: str) -> str:
    """SQL for the title of the job `job_id` of company `company_id` (NULL: none known).

    For the reads that list jobs: one index lookup per line of the page they answer.
    Name the columns with their table (`u.job_id`), or they name known_jobs' own.
    """
    return (
        f"(SELECT known.title FROM known_jobs known"
        f" WHERE known.job_id = {job_id} AND known.company_id = {company_id})"
    )


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
    total_tokens, question_count, cost, model_used, created_at, period, price_id, late
)
SELECT * FROM unnest(
    $1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::int[],
    $7::int[], $8::int[], $9::numeric[], $10::text[], $11::timestamptz[], $12::text[],
    $13::uuid[], $14::boolean[]
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
RETURNING j.job_id, u.question_count, u.cost, u.company_id, u.created_at, u.period, u.late,
    u.prompt_tokens, u.completion_tokens, u.total_tokens
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
    period: str
    late: bool = False
    price_id: UUID | None = None  # the price version it was priced with


@dataclass(frozen=True)
class Attached:
    """A draft row now on its job."""

    job_id: UUID
    question_count: int
    cost: Decimal
    company_id: UUID
    created_at: datetime
    period: str
    late: bool
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


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
        [job.title for job in jobs],
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
        [row.period for row in rows],
        [row.price_id for row in rows],
        [row.late for row in rows],
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
    return [Attached(**dict(row)) for row in rows]
