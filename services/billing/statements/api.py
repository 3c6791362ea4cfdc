"""Statements' routes: a company's statement of a month, closing a month, adjustments."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query

from services.billing.reads.api import BillingCurrency
from services.billing.statements import handlers
from services.billing.statements.handlers import (
    AdjustmentOrder,
    NotTheCompanys,
    PeriodNotEnded,
    StatementView,
)
from services.billing.statements.rules import InvalidPeriod, LineCursor, Period
from services.billing.statements.schemas import (
    Adjustment,
    AdjustmentFingerprint,
    AdjustmentList,
    AdjustmentRequest,
    ClosedPeriod,
    Statement,
    StatementCredits,
    StatementDrafts,
    StatementLate,
    StatementLine,
    StatementTotals,
)
from services.billing.statements.store import Adjustment as StoredAdjustment
from services.servicekit.auth import CurrentPrincipal, Principal, require_role
from services.servicekit.db import Connection
from services.servicekit.http import Clock, Cursors, Pool
from services.servicekit.idempotency import Idempotent
from services.servicekit.pagination import MAX_CURSOR, CursorSeal, decimal_key, uuid_key
from services.servicekit.problems import Problem, documented, invalid

router = APIRouter(prefix="/api/billing", tags=["statements"])

DEFAULT_LINES = 100
MAX_LINES = 1000
OPERATOR = "platform:admin"


def period_in_path(
    period: Annotated[str, Path(description="A month, YYYY-MM.", max_length=20)],
) -> Period:
    try:
        return Period.parse(period)
    except InvalidPeriod as exc:
        raise invalid("period", str(exc), "path") from exc


InPath = Annotated[Period, Depends(period_in_path)]
Operator = Annotated[Principal, Depends(require_role(OPERATOR))]


@router.get(
    "/statements/{period}",
    response_model=Statement,
    responses=documented({}, {401: "no valid token", 422: "a malformed period or cursor"}),
)
async def get_statement(
    principal: CurrentPrincipal,
    period: InPath,
    pool: Pool,
    currency: BillingCurrency,
    cursors: Cursors,
    limit: Annotated[int, Query(ge=1, le=MAX_LINES)] = DEFAULT_LINES,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR)] = None,
) -> Statement:
    """The company's statement of a month: frozen once the month is closed."""
    company = principal.company_id
    after = None
    if cursor:
        cost, job_id = cursors.open(cursor, "statement.lines", LineCursor.scope(period, company), 2)
        after = LineCursor(decimal_key(cost), uuid_key(job_id))
    view = await handlers.read_statement(pool, company, period, after, limit)
    return statement(view, company, currency, cursors)


@router.post(
    "/admin/periods/{period}/close",
    response_model=ClosedPeriod,
    responses=documented(
        {},
        {
            401: "no valid token",
            403: f"the token lacks {OPERATOR}",
            409: "the period has not ended",
            422: "a malformed period",
        },
    ),
)
async def close_period(_: Operator, period: InPath, pool: Pool, clock: Clock) -> ClosedPeriod:
    """Close an ended month for every company (again: the same answer)."""
    try:
        closed = await handlers.close_period(pool, period, clock())
    except PeriodNotEnded as exc:
        raise Problem(409, str(exc)) from exc
    return ClosedPeriod(period=str(closed.period), closed_at=closed.closed_at)


@router.post(
    "/admin/companies/{companyId}/adjustments",
    status_code=201,
    response_model=Adjustment,
    responses=documented(
        {},
        {
            401: "no valid token",
            403: f"the token lacks {OPERATOR}",
            404: "usageId or jobId is not the company's",
            422: "invalid request; `errors` names the fields",
        },
    ),
)
async def post_adjustment(
    operator: Operator,
    company_id: Annotated[UUID, Path(alias="companyId")],
    body: AdjustmentRequest,
    pool: Pool,
    clock: Clock,
    currency: BillingCurrency,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Adjustment:
    """Credit or charge a company in the current open period; usage rows stay as they are."""
    order = AdjustmentOrder(
        company_id=company_id,
        amount=body.amount,
        reason=body.reason,
        usage_id=body.usage_id,
        job_id=body.job_id,
        created_by=operator.user,
    )
    now = clock()

    async def write(conn: Connection) -> Adjustment:
        return adjustment(await handlers.post_adjustment(conn, order, now), currency)

    try:
        # Keys are the operator's: the same key for another company is another request.
        return await Idempotent(pool, Adjustment, status_code=201).run(
            operator.company_id,
            idempotency_key,
            AdjustmentFingerprint(for_company=company_id, request=body),
            write,
        )
    except NotTheCompanys as exc:
        raise Problem(404, str(exc)) from exc


@router.get(
    "/adjustments",
    response_model=AdjustmentList,
    responses=documented({}, {401: "no valid token", 422: "a malformed period"}),
)
async def list_adjustments(
    principal: CurrentPrincipal,
    pool: Pool,
    clock: Clock,
    currency: BillingCurrency,
    period: Annotated[
        str | None, Query(description="A month, YYYY-MM; the current one if absent.", max_length=20)
    ] = None,
) -> AdjustmentList:
    """The company's adjustments of a month, oldest first."""
    try:
        month = Period.parse(period) if period is not None else Period.of(clock())
    except InvalidPeriod as exc:
        raise invalid("period", str(exc)) from exc
    found = await handlers.list_adjustments(pool, principal.company_id, month)
    return AdjustmentList(
        currency=currency, adjustments=[adjustment(item, currency) for item in found]
    )


def adjustment(stored: StoredAdjustment, currency: str) -> Adjustment:
    return Adjustment(
        currency=currency,
        id=stored.id,
        company_id=stored.company_id,
        period=str(stored.period),
        amount=stored.amount,
        reason=stored.reason,
        usage_id=stored.usage_id,
        job_id=stored.job_id,
        created_by=stored.created_by,
        created_at=stored.created_at,
    )


def statement(
    view: StatementView, company_id: UUID, currency: str, cursors: CursorSeal
) -> Statement:
    figures = view.figures
    return Statement(
        currency=currency,
        period=str(view.period),
        status="closed" if view.closed_at is not None else "open",
        closed_at=view.closed_at,
        totals=StatementTotals(question_count=figures.question_count, cost=figures.cost),
        lines=[
            StatementLine(
                job_id=line.job_id,
                job_title=line.job_title,
                question_count=line.question_count,
                cost=line.cost,
            )
            for line in view.lines.items
        ],
        next_cursor=view.lines.cursor(
            lambda last: cursors.seal(
                "statement.lines",
                LineCursor.scope(view.period, company_id),
                LineCursor(last.cost, last.job_id).key(),
            )
        ),
        drafts=StatementDrafts(
            count=figures.draft_count,
            question_count=figures.draft_question_count,
            cost=figures.draft_cost,
        ),
        late=StatementLate(count=figures.late_count, cost=figures.late_cost),
        adjustments=[adjustment(item, currency) for item in view.adjustments],
        total=view.total,
        credits=StatementCredits(applied=figures.credits_applied),
        amount_due=view.amount_due,
    )
