"""Job titles in the ledger: kept from JobCreated, filled in later for a job known untitled."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from tests.integration.ledger.conftest import Ledger
from tests.support.events import generated, job_created

AT = datetime(2025, 6, 10, 9, tzinfo=UTC)


async def title(ledger: Ledger, job_id: UUID) -> str | None:
    async with ledger.pool.acquire() as conn:
        value: str | None = await conn.fetchval(
            "SELECT title FROM known_jobs WHERE job_id = $1", job_id
        )
    return value


async def test_a_job_keeps_the_title_its_event_names(ledger: Ledger, company: UUID) -> None:
    job = job_created(company, title="Backend engineer", at=AT)
    await ledger.record(job)
    await ledger.record(job)  # redelivered: the same row, nothing else

    assert await title(ledger, job.job_id) == "Backend engineer"
    async with ledger.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM known_jobs") == 1


async def test_a_job_known_untitled_takes_the_first_title_named_later(
    ledger: Ledger, company: UUID
) -> None:
    untitled = job_created(company, draft="d-1", at=AT)
    await ledger.record(untitled, generated(company, job_id=untitled.job_id, at=AT))
    assert await title(ledger, untitled.job_id) is None

    named = job_created(
        company, job_id=untitled.job_id, draft="d-1", title="Data analyst", at=AT + timedelta(1)
    )
    renamed = job_created(company, job_id=untitled.job_id, title="Other", at=AT + timedelta(2))
    await ledger.record(named)
    await ledger.record(renamed)

    assert await title(ledger, untitled.job_id) == "Data analyst"
    async with ledger.pool.acquire() as conn:
        kept = await conn.fetchrow("SELECT * FROM known_jobs WHERE job_id = $1", untitled.job_id)
    assert kept is not None
    # Only the title was filled in: the job is the one first learned.
    assert (kept["event_id"], kept["created_at"], kept["draft_job_id"]) == (
        untitled.event_id,
        AT,
        "d-1",
    )
    assert len(await ledger.rows(company)) == 1


async def test_another_companys_event_never_names_a_job(ledger: Ledger, company: UUID) -> None:
    job = job_created(company, at=AT)
    await ledger.record(job)

    await ledger.record(job_created(uuid.uuid4(), job_id=job.job_id, title="Not yours", at=AT))

    assert await title(ledger, job.job_id) is None


async def test_one_batch_may_name_the_same_job_twice(ledger: Ledger, company: UUID) -> None:
    """An upsert may touch a row once per statement: the batch keeps one event per job."""
    job_id = uuid.uuid4()
    untitled = job_created(company, job_id=job_id, at=AT)
    first = job_created(company, job_id=job_id, title="Recruiter", at=AT)
    second = job_created(company, job_id=job_id, title="Sourcer", at=AT)

    recorded = await ledger.record(untitled, first, second)

    assert set(recorded) == {untitled.event_id, first.event_id, second.event_id}
    assert await title(ledger, job_id) == "Recruiter"
