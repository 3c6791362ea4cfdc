"""Routes of the price book: an operator sets a company's price; a company reads its own."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path

from contracts.events import DEFAULT_PRICE_COMPANY
from services.billing.config import Settings
from services.billing.ledger.rules import Pricing
from services.billing.prices import book
from services.billing.prices.rules import RetroactivePrice, UnbillablePrice, check_billable
from services.billing.prices.schemas import CompanyPriceList, Price, PriceIn
from services.billing.reads.api import BillingCurrency, get_settings
from services.servicekit.auth import CurrentPrincipal, Principal, require_role
from services.servicekit.http import Clock, Pool
from services.servicekit.problems import PROBLEM_JSON, Problem

router = APIRouter(prefix="/api/billing", tags=["prices"])

PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
PLATFORM_ADMIN = "platform:admin"
PlatformAdmin = Annotated[Principal, Depends(require_role(PLATFORM_ADMIN))]
BillingSettings = Annotated[Settings, Depends(get_settings)]


def field_error(field: str, message: str) -> Problem:
    return Problem(
        422,
        f"invalid request: {field}: {message}; nothing was changed",
        errors=[{"field": field, "in": "body", "message": message}],
    )


@router.put(
    "/admin/companies/{companyId}/price",
    status_code=201,
    response_model=Price,
    responses={
        401: {"description": "no valid token", **PROBLEM},
        403: {"description": "the token lacks platform:admin", **PROBLEM},
        422: {
            "description": "invalid price, or effectiveFrom before now or before usage "
            "already billed",
            **PROBLEM,
        },
    },
)
async def set_price(
    company_id: Annotated[
        UUID,
        Path(
            alias="companyId",
            description="The company; the nil UUID sets the default price, every company's "
            "until it has its own.",
        ),
    ],
    body: PriceIn,
    principal: PlatformAdmin,
    pool: Pool,
    currency: BillingCurrency,
    clock: Clock,
) -> Price:
    """Add a price version for a company (or the default), in force from `effectiveFrom`
    (the request's own time or later)."""
    requested_at = clock()  # before any wait: the instant the contract compares with
    pricing = Pricing(body.price_per_10_questions, body.profit_margin_percent)
    try:
        check_billable(pricing)
    except UnbillablePrice as exc:
        raise field_error("pricePer10Questions", str(exc)) from exc
    try:
        async with pool.acquire() as conn, conn.transaction():
            version = await book.set_price(
                conn,
                None if company_id == DEFAULT_PRICE_COMPANY else company_id,
                pricing,
                body.effective_from,
                requested_at=requested_at,
                created_by=principal.user,
            )
    except RetroactivePrice as exc:
        raise field_error("effectiveFrom", str(exc)) from exc
    return Price.of(version, currency)


@router.get(
    "/price",
    response_model=CompanyPriceList,
    responses={401: {"description": "no valid token", **PROBLEM}},
)
async def get_price(
    principal: CurrentPrincipal,
    pool: Pool,
    settings: BillingSettings,
    currency: BillingCurrency,
    clock: Clock,
) -> CompanyPriceList:
    """The caller's company's price in force now, and every version that may apply to it."""
    environment = Pricing(settings.price_per_10_questions, settings.profit_margin_percent)
    async with pool.acquire() as conn:
        prices = await book.prices_of(conn, principal.company_id, environment, clock())
    return CompanyPriceList(
        currency=currency,
        current=Price.of(prices.current, currency),
        versions=[Price.of(v, currency) for v in prices.versions],
    )
