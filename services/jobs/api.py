"""HTTP routes of the jobs service. Thin: validate, authorize, delegate."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query

from services.jobs import handlers, store
from services.jobs.handlers import DraftAlreadyUsed
from services.jobs.schemas import CreateJobRequest, Job, JobPage
from services.servicekit.auth import AUTHENTICATED, CurrentPrincipal, ensure_company
from services.servicekit.http import Pool
from services.servicekit.idempotency import Idempotent
from services.servicekit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Cursor
from services.servicekit.problems import ErrorMap, Problem, ProblemOf, documented

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

ERRORS: ErrorMap = {
    DraftAlreadyUsed: ProblemOf[DraftAlreadyUsed](
        409,
        "this draft already became a job; `id` names it",
        members=lambda exc: {"id": str(exc.existing_job_id)},
    ),
}


@router.post(
    "",
    status_code=201,
    response_model=Job,
    responses=documented(ERRORS, AUTHENTICATED),
)
async def create_job(
    body: CreateJobRequest,
    principal: CurrentPrincipal,
    pool: Pool,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Job:
    company_id = ensure_company(principal, body.company_id)
    return await Idempotent(pool, Job, status_code=201).run(
        company_id,
        idempotency_key,
        body,
        lambda conn: handlers.create_job(conn, company_id, body, principal.user),
    )


@router.get("/{job_id}", response_model=Job, responses=documented({}, {404: "no such job"}))
async def get_job(job_id: UUID, principal: CurrentPrincipal, pool: Pool) -> Job:
    async with pool.acquire() as conn:
        row = await store.get_job(conn, principal.company_id, job_id)
    if row is None:
        raise Problem(404, "job not found")
    return Job.model_validate(dict(row))


@router.get("", response_model=JobPage)
async def list_jobs(
    principal: CurrentPrincipal,
    pool: Pool,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    after = Cursor.decode(cursor) if cursor else None
    async with pool.acquire() as conn:
        page = await store.list_jobs(conn, principal.company_id, after, limit)
    jobs = page.map(lambda row: Job.model_validate(dict(row)))
    return JobPage(
        items=jobs.items,
        next_cursor=jobs.cursor(lambda job: Cursor(job.created_at, job.id).encode()),
    )
