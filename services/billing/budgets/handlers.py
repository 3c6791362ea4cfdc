"""What budgets do: set a company's budget (with its event), tell it where it stands."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from contracts.events import BudgetChanged
from contracts.periods import period_of
from services.billing.budgets import store
from services.billing.budgets.rules import normal_thresholds, remaining
from services.billing.budgets.store import Budget
from services.billing.webhooks.urls import Resolver, resolve, vet_url
from services.servicekit import outbox
from services.servicekit.db import Connection

NO_BUDGET = Budget(monthly_limit=None, thresholds=[], webhook_url=None, revision=0)


@dataclass(frozen=True)
class Standing:
    """A company's budget and where it stands in the current period."""

    budget: Budget
    period: str
    spent: Decimal
    remaining: Decimal | None
    new_secret: str | None = None


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_hex(32)}"


async def standing(conn: Connection, company_id: UUID, now: datetime) -> Standing:
    budget = await store.get_budget(conn, company_id) or NO_BUDGET
    period = period_of(now)
    spent = await store.spent(conn, company_id, period)
    return Standing(budget, period, spent, remaining(budget.monthly_limit, spent))


async def check_webhook_url(
    url: str | None, allowed_hosts: frozenset[str], resolver: Resolver = resolve
) -> None:
    """`UnsafeWebhookUrl` unless billing may call it; before anything is written."""
    if url is not None:
        await vet_url(url, allowed_hosts, resolver)


async def set_budget(
    conn: Connection,
    company_id: UUID,
    monthly_limit: Decimal | None,
    thresholds: list[int],
    webhook_url: str | None,
    *,
    now: datetime,
) -> Standing:
    """Replace the company's budget and publish it, in the caller's transaction; `now`
    says which period it stands in."""
    result = await store.put_budget(
        conn,
        company_id,
        monthly_limit,
        normal_thresholds(thresholds),
        webhook_url,
        new_webhook_secret(),
    )
    await outbox.enqueue(
        conn,
        BudgetChanged(
            event_id=uuid.uuid4(),
            occurred_at=now,
            company_id=company_id,
            revision=result.budget.revision,
            monthly_limit=result.budget.monthly_limit,
            thresholds=result.budget.thresholds,
        ),
    )
    period = period_of(now)
    spent = await store.spent(conn, company_id, period)
    return Standing(
        result.budget,
        period,
        spent,
        remaining(result.budget.monthly_limit, spent),
        result.new_secret,
    )
