"""The billing read API: a company's usage rows and its summary. Thin: validate, read, shape."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BeforeValidator

from contracts.events import DraftId
from services.billing.config import Settings
from services.billing.reads import queries
from services.billing.reads.queries import Period, SummaryRows, UsageFilter
from services.billing.reads.schemas import (
    AbandonedDraft,
    DraftTotals,
    JobLine,
    Summary,
    Totals,
    Usage,
    UsagePage,
    UsageStatus,
)
from services.servicekit.auth import CurrentPrincipal
from services.servicekit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Cursor, next_cursor
from services.servicekit.problems import PROBLEM_JSON, Problem

router = APIRouter(prefix="/api/billing", tags=["billing"])

PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid token", **PROBLEM},
    422: {"description": "invalid query; `errors` names the fields", **PROBLEM},
}

# RFC 3339 with a timezone; pydantic alone would also take bare dates and Unix numbers.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 timestamp with a timezone, like 2025-01-31T00:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


def period(
    from_: Annotated[
        Timestamp | None,
        Query(alias="from", description="RFC 3339 with a timezone; inclusive."),
    ] = None,
    to: Annotated[
        Timestamp | None, Query(description="RFC 3339 with a timezone; exclusive.")
    ] = None,
) -> Period:
    if from_ is not None and to is not None and from_ >= to:
        raise Problem(
            422,
            "invalid request: from must be before to",
            errors=[{"field": "from", "in": "query", "message": "must be before to"}],
        )
    return Period(from_, to)


def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.runtime.pool
    return pool


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
InPeriod = Annotated[Period, Depends(period)]


@router.get("/usage", response_model=UsagePage, responses=ERRORS)
async def list_usage(
    principal: CurrentPrincipal,
    pool: Pool,
    within: InPeriod,
    job_id: Annotated[UUID | None, Query(alias="jobId")] = None,
    draft_job_id: Annotated[DraftId | None, Query(alias="draftJobId")] = None,
    status: Annotated[
        UsageStatus | None,
        Query(description="`draft`: still waiting for its job; `job`: on a saved job."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> UsagePage:
    """The company's usage rows, newest first."""
    after = Cursor.decode(cursor) if cursor else None
    where = UsageFilter(job_id, draft_job_id, status)
    async with pool.acquire() as conn:
        rows = await queries.list_usage(conn, principal.company_id, within, where, after, limit)
    items = [Usage.model_validate(dict(row)) for row in rows]
    return UsagePage(
        items=items, next_cursor=next_cursor([(row.created_at, row.id) for row in items], limit)
    )


@router.get(
    "/usage/{usage_id}",
    response_model=Usage,
    responses={**ERRORS, 404: {"description": "no such usage row", **PROBLEM}},
)
async def get_usage(usage_id: UUID, principal: CurrentPrincipal, pool: Pool) -> Usage:
    async with pool.acquire() as conn:
        row = await queries.get_usage(conn, principal.company_id, usage_id)
    if row is None:
        raise Problem(404, "usage not found")
    return Usage.model_validate(dict(row))


@router.get("/summary", response_model=Summary, responses=ERRORS)
async def get_summary(
    principal: CurrentPrincipal,
    pool: Pool,
    settings: Annotated[Settings, Depends(get_settings)],
    within: InPeriod,
) -> Summary:
    """Totals of the period, one line per job, and the drafts still waiting for their job."""
    # One snapshot, so that the totals equal the sum of the lines even while the worker writes.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await queries.summary(conn, principal.company_id, within)
    hours = settings.abandoned_draft_after_hours
    return summarize(
        within,
        rows,
        abandoned_before=datetime.now(UTC) - timedelta(hours=hours),
        abandoned_after_hours=hours,
    )


def summarize(
    within: Period,
    rows: SummaryRows,
    *,
    abandoned_before: datetime,
    abandoned_after_hours: float,
) -> Summary:
    """Shape the summary; a draft first used before `abandoned_before` is abandoned."""
    abandoned = [
        AbandonedDraft.model_validate(dict(row))
        for row in rows.drafts
        if row["first_used_at"] < abandoned_before
    ]
    return Summary.model_validate(
        {
            "from": within.since,
            "to": within.until,
            "abandoned_draft_after_hours": abandoned_after_hours,
            "totals": Totals.model_validate(dict(rows.totals)),
            "jobs": [JobLine.model_validate(dict(row)) for row in rows.jobs],
            "drafts": DraftTotals.model_validate(
                {**dict(rows.draft_totals), "abandoned": len(abandoned)}
            ),
            "abandoned_drafts": abandoned,
        }
    )
