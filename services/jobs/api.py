"""HTTP routes of the jobs service. Thin: validate, authorize, delegate."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from services.jobs import handlers, store
from services.jobs.schemas import CreateJobRequest, Job, JobPage
from services.servicekit.auth import CurrentPrincipal, ensure_company
from services.servicekit.idempotency import validate_key
from services.servicekit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Cursor, next_cursor
from services.servicekit.problems import PROBLEM_JSON, Problem

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}


async def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.runtime.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]


@router.post(
    "",
    status_code=201,
    response_model=Job,
    responses={
        401: {"description": "no valid token", **PROBLEM},
        403: {"description": "companyId differs from the token's", **PROBLEM},
        409: {"description": "this draft already became a job; `id` names it", **PROBLEM},
        422: {"description": "invalid request", **PROBLEM},
    },
)
async def create_job(
    body: CreateJobRequest,
    principal: CurrentPrincipal,
    pool: Pool,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    company_id = ensure_company(principal, body.company_id)
    key = validate_key(idempotency_key) if idempotency_key is not None else None
    outcome = await handlers.create_job(
        pool, company_id, body, user=principal.user, idempotency_key=key
    )
    media_type = PROBLEM_JSON if outcome.status_code >= 400 else "application/json"
    return JSONResponse(outcome.body, status_code=outcome.status_code, media_type=media_type)


@router.get(
    "/{job_id}", response_model=Job, responses={404: {"description": "no such job", **PROBLEM}}
)
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
        rows = await store.list_jobs(conn, principal.company_id, after, limit)
    jobs = [Job.model_validate(dict(row)) for row in rows]
    return JobPage(
        items=jobs, next_cursor=next_cursor([(job.created_at, job.id) for job in jobs], limit)
    )
