"""HTTP bodies of budgets. Money is a 4-place decimal string on the way out."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import ConfigDict, Field, StrictInt

from services.billing.budgets.handlers import Standing
from services.billing.reads.schemas import CamelModel, Money, Priced
from services.billing.webhooks.urls import MAX_URL_LENGTH

LimitAmount = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)]
Threshold = Annotated[StrictInt, Field(ge=1, le=100)]


class BudgetIn(CamelModel):
    """The whole budget: a PUT replaces it (null: no limit, no webhook)."""

    model_config = ConfigDict(extra="forbid")

    monthly_limit: LimitAmount | None = Field(
        description="A decimal string, at least 0, at most 4 places; null: no limit.",
        examples=["100.0000"],
    )
    thresholds: list[Threshold] = Field(
        max_length=100, description="Percent of the limit, 1 to 100.", examples=[[50, 80, 100]]
    )
    webhook_url: str | None = Field(
        max_length=MAX_URL_LENGTH, description="http(s), public; null: no webhook."
    )


class BudgetOut(Priced):
    monthly_limit: Money | None
    thresholds: list[int]
    webhook_url: str | None
    period: str = Field(description="The current billing period, YYYY-MM (UTC).")
    spent: Money = Field(description="What billing has billed in the period.")
    remaining: Money | None = Field(description="What is left of the limit; null: no limit.")
    webhook_secret: str | None = Field(
        default=None,
        description="Only in the answer that first sets a webhook URL: keep it to verify "
        "Billing-Signature.",
    )

    @classmethod
    def of(cls, standing: Standing, currency: str) -> BudgetOut:
        answer = cls(
            currency=currency,
            monthly_limit=standing.budget.monthly_limit,
            thresholds=standing.budget.thresholds,
            webhook_url=standing.budget.webhook_url,
            period=standing.period,
            spent=standing.spent,
            remaining=standing.remaining,
        )
        if standing.new_secret is not None:
            answer.webhook_secret = standing.new_secret
        return answer
