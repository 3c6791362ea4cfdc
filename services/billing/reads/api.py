"""The billing read API: usage rows, the summary, drafts, the daily series, the CSV export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from contracts.events import DraftId
from services.billing.config import Settings
from services.billing.reads import queries
from services.billing.reads.export import stream_usage_csv
from services.billing.reads.queries import JobsAfter, Period, UsageFilter
from services.billing.reads.rules import (
    DEFAULT_PAGE,
    MAX_DAYS,
    MAX_PAGE,
    cut_into_days,
    days_between,
)
from services.billing.reads.schemas import (
    DailySeries,
    Draft,
    DraftPage,
    DraftTotals,
    JobLine,
    Summary,
    Totals,
    Usage,
    UsagePage,
    UsageStatus,
)
from services.billing.rollups.store import SUMS
from services.servicekit.auth import CurrentPrincipal
from services.servicekit.http import Clock, Cursors, Pool
from services.servicekit.instants import Day, Timestamp
from services.servicekit.pagination import (
    DEFAULT_LIMIT,
    MAX_CURSOR,
    MAX_LIMIT,
    Cursor,
    decimal_key,
    instant_key,
    uuid_key,
)
from services.servicekit.problems import PROBLEM_JSON, ErrorMap, Problem, invalid

router = APIRouter(prefix="/api/billing", tags=["billing"])

# The reads' domain errors, answered by the app (`create_app` installs them). A bad query
# (a range, a cursor) is refused where it is read, as a 422 naming its field.
ERRORS: ErrorMap = {}

PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid token", **PROBLEM},
    422: {"description": "invalid query; `errors` names the fields", **PROBLEM},
}


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
        raise invalid("from", "must be before to")
    return Period(from_, to)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def billing_currency(request: Request) -> str:
    """The currency every amount of an answer is in (`BILLING_CURRENCY`)."""
    return str(get_settings(request).billing_currency)


InPeriod = Annotated[Period, Depends(period)]
BillingCurrency = Annotated[str, Depends(billing_currency)]


@router.get("/usage", response_model=UsagePage, responses=RESPONSES)
async def list_usage(
    principal: CurrentPrincipal,
    pool: Pool,
    currency: BillingCurrency,
    cursors: Cursors,
    within: InPeriod,
    job_id: Annotated[UUID | None, Query(alias="jobId")] = None,
    draft_job_id: Annotated[DraftId | None, Query(alias="draftJobId")] = None,
    status: Annotated[
        UsageStatus | None,
        Query(description="`draft`: still waiting for its job; `job`: on a saved job."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            max_length=MAX_CURSOR,
            description="A `nextCursor`, with the same from, to, jobId, draftJobId and status.",
        ),
    ] = None,
) -> UsagePage:
    """The company's usage rows, newest first."""
    scope = {
        **_range_scope(principal.company_id, within),
        "jobId": job_id,
        "draftJobId": draft_job_id,
        "status": status,
    }
    after = Cursor.of_key(cursors.open(cursor, "usage", scope, 2)) if cursor else None
    where = UsageFilter(job_id, draft_job_id, status)
    async with pool.acquire() as conn:
        page = await queries.list_usage(conn, principal.company_id, within, where, after, limit)
    items = page.map(lambda row: Usage.model_validate({**dict(row), "currency": currency}))
    return UsagePage(
        currency=currency,
        items=items.items,
        next_cursor=items.cursor(
            lambda row: cursors.seal("usage", scope, Cursor(row.created_at, row.id).key())
        ),
    )


@router.get("/usage/daily", response_model=DailySeries, responses=RESPONSES)
async def get_daily(
    principal: CurrentPrincipal,
    pool: Pool,
    currency: BillingCurrency,
    from_: Annotated[Day, Query(alias="from", description="First UTC day, YYYY-MM-DD.")],
    to: Annotated[Day, Query(description="Last UTC day, YYYY-MM-DD, included.")],
) -> DailySeries:
    """Usage per UTC day, oldest first: one entry per day with usage, at most 400 days."""
    if from_ > to:
        raise invalid("from", "must not be after to")
    if days_between(from_, to) > MAX_DAYS:
        raise invalid("to", f"at most {MAX_DAYS} days from from (both included)")
    async with pool.acquire() as conn:
        rows = await queries.daily(conn, principal.company_id, from_, to)
    return DailySeries.model_validate(
        {
            "currency": currency,
            "from": from_,
            "to": to,
            "days": [{"date": row["day"], **dict(row)} for row in rows],
        }
    )


@router.get(
    "/usage/{usage_id}",
    response_model=Usage,
    responses={**RESPONSES, 404: {"description": "no such usage row", **PROBLEM}},
)
async def get_usage(
    usage_id: UUID, principal: CurrentPrincipal, pool: Pool, currency: BillingCurrency
) -> Usage:
    async with pool.acquire() as conn:
        row = await queries.get_usage(conn, principal.company_id, usage_id)
    if row is None:
        raise Problem(404, "usage not found")
    return Usage.model_validate({**dict(row), "currency": currency})


@router.get("/summary", response_model=Summary, responses=RESPONSES)
async def get_summary(
    principal: CurrentPrincipal,
    pool: Pool,
    settings: Annotated[Settings, Depends(get_settings)],
    currency: BillingCurrency,
    clock: Clock,
    cursors: Cursors,
    within: InPeriod,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE, description="Job lines per page.")
    ] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR)] = None,
) -> Summary:
    """Totals of the range, one page of job lines by cost, and the drafts still waiting."""
    company = principal.company_id
    scope = _range_scope(company, within)
    after = JobsAfter()
    if cursor:
        cost, job_id = cursors.open(cursor, "summary.jobs", scope, 2)
        after = JobsAfter(decimal_key(cost), uuid_key(job_id))
    hours = settings.abandoned_draft_after_hours
    abandoned_before = clock() - timedelta(hours=hours)
    # One snapshot, so that the totals and the lines agree even while the worker writes.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await queries.summary(
            conn,
            company,
            within,
            cut_into_days(within.since, within.until),
            after,
            limit,
            abandoned_before,
        )
    return Summary.model_validate(
        {
            "currency": currency,
            "from": within.since,
            "to": within.until,
            "abandoned_draft_after_hours": hours,
            "totals": Totals.model_validate(dict(rows.totals)),
            "jobs": [JobLine.model_validate(dict(row)) for row in rows.jobs.items],
            "next_cursor": rows.jobs.cursor(
                lambda last: cursors.seal(
                    "summary.jobs", scope, [str(last["cost"]), str(last["job_id"])]
                )
            ),
            "drafts": DraftTotals.model_validate(
                {
                    **{name: rows.totals[f"draft_{name}"] for name in SUMS},
                    "count": rows.drafts["count"],
                    "abandoned": rows.drafts["abandoned"],
                }
            ),
        }
    )


@router.get("/drafts", response_model=DraftPage, responses=RESPONSES)
async def list_drafts(
    principal: CurrentPrincipal,
    pool: Pool,
    settings: Annotated[Settings, Depends(get_settings)],
    currency: BillingCurrency,
    clock: Clock,
    cursors: Cursors,
    abandoned: Annotated[
        bool | None,
        Query(description="true: only the abandoned drafts; false: only the others."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR)] = None,
) -> DraftPage:
    """The open drafts (usage waiting for its job), oldest first use first."""
    company = principal.company_id
    scope = {"company": company, "abandoned": abandoned}
    after = None
    if cursor:
        first_used_at, draft_job_id = cursors.open(cursor, "drafts", scope, 2)
        after = (instant_key(first_used_at), draft_job_id)
    abandoned_before = clock() - timedelta(hours=settings.abandoned_draft_after_hours)
    async with pool.acquire() as conn:
        page = await queries.list_drafts(conn, company, abandoned, after, limit, abandoned_before)
    drafts = page.map(lambda row: Draft.model_validate(dict(row)))
    return DraftPage(
        currency=currency,
        drafts=drafts.items,
        next_cursor=drafts.cursor(
            lambda last: cursors.seal(
                "drafts", scope, [last.first_used_at.isoformat(), last.draft_job_id]
            )
        ),
    )


@router.get(
    "/usage.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "the rows, oldest first"},
        **RESPONSES,
    },
)
async def export_usage(
    principal: CurrentPrincipal, pool: Pool, currency: BillingCurrency, within: InPeriod
) -> StreamingResponse:
    """Every usage row of the company in the range, oldest first, as CSV (streamed)."""
    name = f"usage-{_day(within.since, 'start')}-{_day(within.until, 'now')}.csv"
    return StreamingResponse(
        stream_usage_csv(pool, principal.company_id, within.since, within.until, currency),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _range_scope(company_id: UUID, within: Period) -> dict[str, object]:
    """What binds a cursor of a list over a range: the company, and the range itself."""
    return {"company": company_id, "from": _text(within.since), "to": _text(within.until)}


def _text(instant: datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(UTC).isoformat()


def _day(instant: datetime | None, otherwise: str) -> str:
    return otherwise if instant is None else instant.astimezone(UTC).strftime("%Y-%m-%dT%H%M%SZ")
