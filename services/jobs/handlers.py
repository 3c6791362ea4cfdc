"""Creating a job: the job, its JobCreated event and the idempotent answer, in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from contracts.events import JobCreated
from services.jobs import store
from services.jobs.schemas import CreateJobRequest, Job
from services.servicekit import idempotency
from services.servicekit.db import Connection
from services.servicekit.idempotency import ClaimState
from services.servicekit.logs import current_correlation_id
from services.servicekit.problems import Problem

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What to answer: 201 with the job, or 409 naming the job the draft already became."""

    status_code: int
    body: dict[str, Any]


def draft_taken(existing_job_id: UUID) -> Outcome:
    return Outcome(
        409,
        {
            "type": "about:blank",
            "title": "Conflict",
            "status": 409,
            "detail": "a job was already created from this draft",
            "id": str(existing_job_id),
        },
    )


async def create_job(
    pool: asyncpg.Pool,
    company_id: UUID,
    request: CreateJobRequest,
    *,
    user: str | None,
    idempotency_key: str | None,
) -> Outcome:
    if idempotency_key is None:
        async with pool.acquire() as conn:  # one statement writes job and event: atomic
            return await _insert(conn, company_id, request, user)
    fingerprint = idempotency.request_fingerprint(
        request.model_dump(mode="json", exclude={"company_id"})
    )
    async with pool.acquire() as conn, conn.transaction():
        # A concurrent request with this key waits here until ours commits.
        claim = await idempotency.claim(conn, company_id, idempotency_key, fingerprint)
        if claim.state is ClaimState.REPLAY:
            return Outcome(claim.status_code, claim.response)
        if claim.state is ClaimState.IN_PROGRESS:
            raise Problem(409, "a request with this Idempotency-Key is still in progress")
        outcome = await _insert(conn, company_id, request, user)
        await idempotency.complete(
            conn, company_id, idempotency_key, outcome.status_code, outcome.body
        )
    return outcome


async def _insert(
    conn: Connection, company_id: UUID, request: CreateJobRequest, user: str | None
) -> Outcome:
    event = JobCreated(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=company_id,
        job_id=uuid.uuid4(),
        draft_job_id=request.draft_job_id,
        created_by=request.created_by if request.created_by is not None else user,
    )
    row = await store.insert_job_with_event(
        conn,
        event,
        correlation_id=current_correlation_id(),
        title=request.title,
        description=request.description,
        details=request.details,
    )
    if row is None:
        assert request.draft_job_id is not None  # only a draft can conflict
        existing = await store.job_id_by_draft(conn, company_id, request.draft_job_id)
        assert existing is not None
        return draft_taken(existing)
    job = Job.model_validate(dict(row))
    log.info(
        "job created",
        job_id=str(job.id),
        company_id=str(company_id),
        draft_job_id=job.draft_job_id,
    )
    return Outcome(201, job.model_dump(mode="json", by_alias=True))
