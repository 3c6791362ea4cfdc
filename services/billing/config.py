from __future__ import annotations

from decimal import Decimal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_extra_types.currency_code import Currency

from services.billing.ledger.rules import Pricing
from services.billing.prices.rules import (
    MarginPercent,
    PriceAmount,
    UnbillablePrice,
    check_billable,
)
from services.servicekit.settings import PublisherSettings

OPENAI_ADMIN_BASE_URL = "https://api.openai.com/v1"


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

    # Reconciliation with the provider's usage API (services/billing/reconciliation/).
    openai_admin_key: SecretStr | None = Field(
        default=None,
        description="An admin key of the OpenAI organization; without one, reconciliation is off.",
    )
    openai_admin_base_url: str = Field(
        default=OPENAI_ADMIN_BASE_URL, description="Where the organization usage API is."
    )
    openai_project_id: str | None = Field(
        default=None, description="Only this project's usage is compared (unset: the whole org)."
    )
    reconciliation_tolerance_percent: Decimal = Field(
        default=Decimal("1"),
        ge=0,
        le=100,
        decimal_places=4,
        description="A figure differing by more than this percent of ours is drift.",
    )
    reconciliation_daily: bool = Field(
        default=True, description="Run once a day on its own (one process does, by a lock)."
    )
    reconciliation_poll_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How often each process looks whether the day's run is due (and refreshes "
        "the reconciliation gauges).",
    )
    reconciliation_retry_seconds: float = Field(
        default=3600.0, gt=0, description="After a daily run failed, the wait before the next."
    )
    reconciliation_timeout_seconds: float = Field(
        default=30.0, gt=0, le=300, description="The most one request to the usage API may take."
    )
    reconciliation_attempts: int = Field(
        default=4, ge=1, le=10, description="Attempts per page on 429, 5xx, timeouts."
    )
    reconciliation_backoff_seconds: float = Field(
        default=1.0, ge=0, le=60, description="First wait when the provider names none; doubles."
    )
    reconciliation_answer_within_seconds: float = Field(
        default=10.0,
        ge=0,
        le=60,
        description="How long POST .../reconciliation/run waits for its run: then 202.",
    )

    @field_validator("openai_admin_key", "openai_project_id", mode="before")
    @classmethod
    def _reconciliation_unset_when_empty(cls, value: object) -> object:
        # Compose passes an unset variable as "".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("openai_admin_base_url", mode="before")
    @classmethod
    def _default_when_empty(cls, value: object) -> object:
        return OPENAI_ADMIN_BASE_URL if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _billable_price(self) -> Settings:
        try:
            check_billable(Pricing(self.price_per_10_questions, self.profit_margin_percent))
        except UnbillablePrice as exc:
            raise ValueError(f"PRICE_PER_10_QUESTIONS, PROFIT_MARGIN_PERCENT: {exc}") from exc
        return self
