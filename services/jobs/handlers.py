"""Creating a job: the job and its JobCreated event in one statement; one job per draft."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from uuid import UUID

import structlog

from contracts.events import JobCreated
from services.jobs import store
from services.jobs.schemas import CreateJobRequest, Job
from services.servicekit.db import Connection
from services.servicekit.logs import current_correlation_id

log = structlog.get_logger(__name__)


class DraftAlreadyUsed(Exception):
    """One draft becomes at most one job per company: this one already did."""

    def __init__(self, existing_job_id: UUID) -> None:
        super().__init__("a job was already created from this draft")
        self.existing_job_id = existing_job_id


def job_created(company_id: UUID, request: CreateJobRequest, user: str | None) -> JobCreated:
    return JobCreated(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=company_id,
        job_id=uuid.uuid4(),
        draft_job_id=request.draft_job_id,
        created_by=request.created_by if request.created_by is not None else user,
        title=request.title,
    )


async def create_job(
    conn: Connection, company_id: UUID, request: CreateJobRequest, user: str | None
) -> Job:
    """The new job; `DraftAlreadyUsed` if its draft already became one (nothing written)."""
    event = job_created(company_id, request, user)
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
        raise DraftAlreadyUsed(existing)
    job = Job.model_validate(dict(row))
    log.info(
        "job created", job_id=str(job.id), company_id=str(company_id), draft_job_id=job.draft_job_id
    )
    return job
