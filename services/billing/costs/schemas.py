"""HTTP bodies of the cost of goods (operators only). Rates are 4-place decimal strings,
provider costs and margins 8-place ones, a margin percent a 2-place one: never a float."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, PlainSerializer, WithJsonSchema

from services.billing.costs.margins import TWO_PLACES
from services.billing.costs.rules import MAX_RATE, format_cost
from services.billing.reads.schemas import CamelModel, Money
from services.servicekit.instants import Timestamp

# A model as the provider names it (a dated snapshot too); no "/" (it is a path segment).
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00/]+$")]
# In: at least 0, at most 4 places; a float's binary noise is refused, not rounded.
RateAmount = Annotated[Decimal, Field(ge=0, le=MAX_RATE, max_digits=10, decimal_places=4)]

ProviderCost = Annotated[
    Decimal,
    PlainSerializer(format_cost, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^-?\d+\.\d{8}$", "examples": ["0.00312500"]},
        mode="serialization",
    ),
]
Percent = Annotated[
    Decimal,
    PlainSerializer(lambda value: str(value.quantize(TWO_PLACES)), return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^-?\d+\.\d{2}$", "examples": ["37.50"]},
        mode="serialization",
    ),
]
GroupBy = Literal["company", "model", "day"]


class ModelPriceIn(CamelModel):
    model_config = ConfigDict(extra="forbid")

    input_per_1m: RateAmount = Field(alias="inputPer1M", examples=["2.5000"])
    cached_input_per_1m: RateAmount = Field(alias="cachedInputPer1M", examples=["1.2500"])
    output_per_1m: RateAmount = Field(alias="outputPer1M", examples=["10.0000"])
    effective_from: Timestamp = Field(
        description="RFC 3339. Any instant: a version for the past re-prices the calls it covers."
    )


class Repricing(CamelModel):
    done: bool = Field(description="Every call the version covers has been priced again.")
    calls_scanned: int
    calls_repriced: int = Field(description="Calls whose provider cost changed.")


class ModelPrice(CamelModel):
    model_price_id: UUID
    model: str
    input_per_1m: Money = Field(alias="inputPer1M")
    cached_input_per_1m: Money = Field(alias="cachedInputPer1M")
    output_per_1m: Money = Field(alias="outputPer1M")
    effective_from: datetime
    created_at: datetime | None = None
    created_by: str | None = Field(
        default=None, description="The operator's `sub`; `shipped` for the prices shipped."
    )
    source: str | None = Field(default=None, description="Where a shipped price was read.")
    read_on: date | None = Field(default=None, description="When a shipped price was read.")
    repricing: Repricing | None = None


class ModelPriceList(CamelModel):
    prices: list[ModelPrice] = Field(description="By model, then effectiveFrom, oldest first.")
    next_cursor: str | None


class MarginGroup(CamelModel):
    group: str = Field(description="The company id, the model, or the day (YYYY-MM-DD).")
    revenue: Money = Field(description="What was billed (the usage rows' cost).")
    provider_cost: ProviderCost | None = Field(
        description="Every priced call, billed or not; null when the group has no priced call."
    )
    unbilled_provider_cost: ProviderCost | None = Field(
        description="The priced calls that were not billed (failed, timed out, cancelled)."
    )
    margin: ProviderCost | None = Field(description="revenue - providerCost.")
    margin_percent: Percent | None = Field(
        description="margin / revenue * 100, 2 places; null when revenue is 0."
    )
    calls: int
    unpriced_calls: int = Field(description="Calls whose model had no price at their instant.")


class Margin(CamelModel):
    group_by: GroupBy
    from_: date = Field(alias="from")
    to: date
    currency: str
    groups: list[MarginGroup]
    next_cursor: str | None
