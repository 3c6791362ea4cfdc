"""Routes of budgets: a company's billing admin sets its budget; anyone of it reads it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from services.billing.budgets import handlers
from services.billing.budgets.schemas import BudgetIn, BudgetOut
from services.billing.config import Settings
from services.billing.reads.api import BillingCurrency, get_settings
from services.billing.webhooks.urls import UnsafeWebhookUrl, parse_allowed_hosts
from services.servicekit.auth import CurrentPrincipal, Principal, require_role
from services.servicekit.http import Clock, Pool
from services.servicekit.problems import PROBLEM_JSON, Problem

router = APIRouter(prefix="/api/billing", tags=["budgets"])

PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
BILLING_ADMIN = "billing:admin"
BillingAdmin = Annotated[Principal, Depends(require_role(BILLING_ADMIN))]
BillingSettings = Annotated[Settings, Depends(get_settings)]


@router.put(
    "/budget",
    response_model=BudgetOut,
    response_model_exclude_unset=True,
    responses={
        401: {"description": "no valid token", **PROBLEM},
        403: {"description": "the token lacks billing:admin", **PROBLEM},
        422: {"description": "invalid budget; `errors` names the field", **PROBLEM},
    },
)
async def set_budget(
    body: BudgetIn,
    principal: BillingAdmin,
    pool: Pool,
    settings: BillingSettings,
    currency: BillingCurrency,
    clock: Clock,
) -> BudgetOut:
    """Replace the company's budget; the answer that first sets a webhook URL has its secret."""
    try:
        await handlers.check_webhook_url(
            body.webhook_url, parse_allowed_hosts(settings.webhook_allowed_hosts)
        )
    except UnsafeWebhookUrl as exc:
        raise Problem(
            422,
            f"invalid request: webhookUrl: {exc}; nothing was changed",
            errors=[{"field": "webhookUrl", "in": "body", "message": str(exc)}],
        ) from exc
    async with pool.acquire() as conn, conn.transaction():
        standing = await handlers.set_budget(
            conn,
            principal.company_id,
            body.monthly_limit,
            body.thresholds,
            body.webhook_url,
            now=clock(),
        )
    return BudgetOut.of(standing, currency)


@router.get(
    "/budget",
    response_model=BudgetOut,
    response_model_exclude_unset=True,
    responses={401: {"description": "no valid token", **PROBLEM}},
)
async def get_budget(
    principal: CurrentPrincipal, pool: Pool, currency: BillingCurrency, clock: Clock
) -> BudgetOut:
    """The company's budget and where it stands in the current period."""
    async with pool.acquire() as conn:
        standing = await handlers.standing(conn, principal.company_id, clock())
    return BudgetOut.of(standing, currency)
