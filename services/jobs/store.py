"""Every SQL statement of the jobs service. Functions take a connection and never commit."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from contracts.events import JobCreated
from services.servicekit import outbox
from services.servicekit.db import Connection
from services.servicekit.pagination import Cursor, Page, fetch_page

JOB_COLUMNS = "id, company_id, title, description, created_by, draft_job_id, created_at, details"

# A job; nothing when the company already made one from this draft (written with its event).
INSERT_JOB = f"""
INSERT INTO jobs (id, company_id, title, description, created_by, draft_job_id, details, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (company_id, draft_job_id) WHERE draft_job_id IS NOT NULL DO NOTHING
RETURNING {JOB_COLUMNS}
"""

# The job a company made from a draft.
JOB_ID_BY_DRAFT = "SELECT id FROM jobs WHERE company_id = $1 AND draft_job_id = $2"

# One job of a company.
GET_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE company_id = $1 AND id = $2"

# A page of a company's jobs, newest first, after a cursor; $4 rows.
LIST_JOBS = f"""
SELECT {JOB_COLUMNS} FROM jobs
WHERE company_id = $1
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4
"""


async def insert_job_with_event(
    conn: Connection,
    event: JobCreated,
    *,
    correlation_id: str | None,
    title: str,
    description: str,
    details: dict[str, Any],
) -> asyncpg.Record | None:
    """The job row, with its event added in the same statement; None if the draft is taken."""
    arguments = (
        event.job_id,
        event.company_id,
        title,
        description,
        event.created_by,
        event.draft_job_id,
        details,
        event.occurred_at,
    )
    return await outbox.write_with_event(
        conn, INSERT_JOB, arguments, event, correlation_id=correlation_id
    )


async def job_id_by_draft(conn: Connection, company_id: UUID, draft_job_id: str) -> UUID | None:
    job_id: UUID | None = await conn.fetchval(JOB_ID_BY_DRAFT, company_id, draft_job_id)
    return job_id


async def get_job(conn: Connection, company_id: UUID, job_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(GET_JOB, company_id, job_id)
    return row


async def list_jobs(
    conn: Connection, company_id: UUID, cursor: Cursor | None, limit: int
) -> Page[asyncpg.Record]:
    return await fetch_page(
        conn,
        LIST_JOBS,
        company_id,
        cursor.created_at if cursor else None,
        cursor.id if cursor else None,
        limit=limit,
    )
