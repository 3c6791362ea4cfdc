from __future__ import annotations

from decimal import Decimal

from pydantic import Field, model_validator
from pydantic_extra_types.currency_code import Currency

from services.billing.ledger.rules import Pricing
from services.billing.prices.rules import (
    MarginPercent,
    PriceAmount,
    UnbillablePrice,
    check_billable,
)
from services.servicekit.settings import PublisherSettings


class Settings(PublisherSettings):
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/billing",
        validation_alias="BILLING_DATABASE_URL",
    )
    port: int = Field(default=8003, validation_alias="BILLING_PORT")

    # Seed the price book's default once (prices/book.py), so checked as a price set by
    # the API is: a price no generation could be billed at is refused at start.
    price_per_10_questions: PriceAmount = Decimal("0.10")
    profit_margin_percent: MarginPercent = Decimal("0")
    billing_currency: Currency = Field(
        default=Currency("USD"), description="ISO 4217 code of every amount billing answers with."
    )

    repricing_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Calls re-priced per transaction."
    )
    repricing_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the re-pricing worker looks for work."
    )

    batch_max_size: int = Field(default=500, ge=1, le=10_000)
    prefetch_count: int = Field(default=1000, ge=1, le=65_535)
    max_failed_attempts: int = Field(
        default=5, ge=1, description="Failures of one message (not transient) before its DLQ."
    )
    abandoned_draft_after_hours: float = Field(
        default=72.0, gt=0, description="A draft this old with no job is listed as abandoned."
    )

    webhook_allowed_hosts: str = Field(
        default="",
        description="Comma-separated hosts a webhook URL may name even if they resolve to an "
        "internal address (local development and tests); empty in production.",
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_first_retry_seconds: float = Field(
        default=5.0, gt=0, description="Wait after a webhook's first failed attempt; doubles."
    )
    webhook_max_retry_seconds: float = Field(default=3600.0, gt=0)
    webhook_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the delivery worker looks for due webhooks."
    )
    credit_expiry_poll_seconds: float = Field(
        default=5.0, gt=0, description="How often billing looks for credit grants to expire."
    )

    @model_validator(mode="after")
    def _billable_price(self) -> Settings:
        try:
            check_billable(Pricing(self.price_per_10_questions, self.profit_margin_percent))
        except UnbillablePrice as exc:
            raise ValueError(f"PRICE_PER_10_QUESTIONS, PROFIT_MARGIN_PERCENT: {exc}") from exc
        return self
