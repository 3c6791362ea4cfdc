"""Credits' routes: the operator grants, voids and sets the mode; the company reads its credits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query

from services.billing.credits import handlers
from services.billing.credits.handlers import GrantNotFound, GrantOrder
from services.billing.credits.rules import check_window
from services.billing.credits.schemas import (
    CreditMode,
    CreditModeFingerprint,
    CreditModeRequest,
    Credits,
    Entries,
    Entry,
    Grant,
    GrantFingerprint,
    GrantRequest,
    VoidFingerprint,
)
from services.billing.credits.store import StoredGrant
from services.billing.reads.api import BillingCurrency, period
from services.billing.reads.queries import Period
from services.servicekit.auth import CurrentPrincipal, Principal, require_role
from services.servicekit.db import Connection
from services.servicekit.http import Clock, Cursors, Pool
from services.servicekit.idempotency import Idempotent
from services.servicekit.pagination import Cursor, bigint_key
from services.servicekit.problems import Problem, documented, invalid

router = APIRouter(prefix="/api/billing", tags=["credits"])

OPERATOR = "platform:admin"
Operator = Annotated[Principal, Depends(require_role(OPERATOR))]
CompanyInPath = Annotated[UUID, Path(alias="companyId")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
ADMIN_ERRORS = {401: "no valid token", 403: f"the token lacks {OPERATOR}"}


def grant(stored: StoredGrant, currency: str) -> Grant:
    return Grant.model_validate({**vars(stored), "currency": currency})


@router.post(
    "/admin/companies/{companyId}/credits",
    status_code=201,
    response_model=Grant,
    responses=documented({}, ADMIN_ERRORS),
)
async def post_grant(
    operator: Operator,
    company_id: CompanyInPath,
    body: GrantRequest,
    pool: Pool,
    clock: Clock,
    currency: BillingCurrency,
    idempotency_key: IdempotencyKey = None,
) -> Grant:
    """Grant credits to a company: its balance grows by the amount at once."""
    now = clock()
    try:
        check_window(body.effective_at or now, body.expires_at)
    except ValueError as exc:
        raise invalid("expiresAt", str(exc), "body") from exc
    order = GrantOrder(
        company_id=company_id,
        amount=body.amount,
        kind=body.kind,
        priority=body.priority,
        effective_at=body.effective_at,
        expires_at=body.expires_at,
        reason=body.reason,
        created_by=operator.user,
    )

    async def write(conn: Connection) -> Grant:
        return grant(await handlers.grant_credits(conn, order, now), currency)

    # Keys are the operator's: the same key for another company is another request.
    return await Idempotent(pool, Grant, status_code=201).run(
        operator.company_id,
        idempotency_key,
        GrantFingerprint(for_company=company_id, request=body),
        write,
    )


@router.post(
    "/admin/companies/{companyId}/credits/{grantId}/void",
    response_model=Grant,
    responses=documented({}, {**ADMIN_ERRORS, 404: "no such grant of the company"}),
)
async def post_void(
    operator: Operator,
    company_id: CompanyInPath,
    grant_id: Annotated[UUID, Path(alias="grantId")],
    pool: Pool,
    clock: Clock,
    currency: BillingCurrency,
    idempotency_key: IdempotencyKey = None,
) -> Grant:
    """Void what remains of a grant (again: the same answer, nothing more voided)."""
    now = clock()

    async def write(conn: Connection) -> Grant:
        return grant(await handlers.void_grant(conn, company_id, grant_id, now), currency)

    try:
        return await Idempotent(pool, Grant).run(
            operator.company_id,
            idempotency_key,
            VoidFingerprint(for_company=company_id, void_grant=grant_id),
            write,
        )
    except GrantNotFound as exc:
        raise Problem(404, str(exc)) from exc


@router.put(
    "/admin/companies/{companyId}/credit-mode",
    response_model=CreditMode,
    responses=documented({}, ADMIN_ERRORS),
)
async def put_credit_mode(
    operator: Operator,
    company_id: CompanyInPath,
    body: CreditModeRequest,
    pool: Pool,
    clock: Clock,
    currency: BillingCurrency,
    idempotency_key: IdempotencyKey = None,
) -> CreditMode:
    """Set how a company's credits are used and the balance below which it is alerted."""
    now = clock()

    async def write(conn: Connection) -> CreditMode:
        account = await handlers.set_mode(
            conn, company_id, body.mode, body.low_balance_threshold, now
        )
        return CreditMode.model_validate({**vars(account), "currency": currency})

    return await Idempotent(pool, CreditMode).run(
        operator.company_id,
        idempotency_key,
        CreditModeFingerprint(for_company=company_id, request=body),
        write,
    )


@router.get(
    "/credits",
    response_model=Credits,
    responses=documented({}, {401: "no valid token", 422: "a malformed cursor"}),
)
async def get_credits(
    principal: CurrentPrincipal,
    pool: Pool,
    currency: BillingCurrency,
    cursors: Cursors,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Credits:
    """The company's balance, mode and one page of its grants, newest first."""
    scope = {"company": principal.company_id}
    after = Cursor.of_key(cursors.open(cursor, "credits.grants", scope, 2)) if cursor else None
    view = await handlers.read_credits(
        pool, principal.company_id, (after.created_at, after.id) if after else None, limit
    )
    account = view.account
    return Credits(
        currency=currency,
        balance=account.balance,
        mode=account.mode,
        low_balance_threshold=account.low_balance_threshold,
        grants=[grant(item, currency) for item in view.grants.items],
        next_cursor=view.grants.cursor(
            lambda last: cursors.seal(
                "credits.grants", scope, Cursor(last.created_at, last.grant_id).key()
            )
        ),
    )


@router.get(
    "/credits/entries",
    response_model=Entries,
    responses=documented({}, {401: "no valid token", 422: "a malformed cursor"}),
)
async def get_entries(
    principal: CurrentPrincipal,
    pool: Pool,
    currency: BillingCurrency,
    cursors: Cursors,
    within: Annotated[Period, Depends(period)],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Entries:
    """The company's credit ledger, newest first: grants, draws, expiries, voids; with
    `from` and `to`, only the entries made in that range (a month's, for the console)."""
    company = principal.company_id
    # Sealed, and its id parsed as a bigint: a forged number past the column is a 422. A
    # cursor belongs to its range too: another range's cursor is refused, not misread.
    scope = {"company": company, "from": _text(within.since), "to": _text(within.until)}
    before = bigint_key(cursors.open(cursor, "credits.entries", scope, 1)[0]) if cursor else None
    page = await handlers.read_entries(pool, company, before, (within.since, within.until), limit)
    return Entries(
        currency=currency,
        entries=[Entry.model_validate(item, from_attributes=True) for item in page.items],
        next_cursor=page.cursor(
            lambda last: cursors.seal("credits.entries", scope, [str(last.id)])
        ),
    )


def _text(instant: datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(UTC).isoformat()
