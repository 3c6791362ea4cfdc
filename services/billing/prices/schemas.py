"""HTTP bodies of the price book. Money is a 4-place decimal string on the way out."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import ConfigDict, Field

from services.billing.prices.rules import MarginPercent, PriceAmount, PriceVersion
from services.billing.reads.schemas import CamelModel, Money, Priced
from services.servicekit.instants import Timestamp


class PriceIn(CamelModel):
    model_config = ConfigDict(extra="forbid")

    price_per_10_questions: PriceAmount = Field(examples=["0.1500"])
    profit_margin_percent: MarginPercent = Field(examples=["20"])
    effective_from: Timestamp = Field(
        description="RFC 3339; now or later (history is never re-priced)."
    )


class Price(Priced):
    price_id: UUID
    company_id: UUID | None = Field(description="null for the default (environment) price.")
    is_default: bool
    price_per_10_questions: Money
    profit_margin_percent: Money
    effective_from: datetime

    @classmethod
    def of(cls, version: PriceVersion, currency: str) -> Price:
        return cls(
            currency=currency,
            price_id=version.price_id,
            company_id=version.company_id,
            is_default=version.is_default,
            price_per_10_questions=version.pricing.price_per_10_questions,
            profit_margin_percent=version.pricing.profit_margin_percent,
            effective_from=version.effective_from,
        )


class CompanyPriceList(Priced):
    current: Price = Field(description="The price in force now.")
    versions: list[Price] = Field(
        description="The company's versions and the default ones, latest effectiveFrom first."
    )
