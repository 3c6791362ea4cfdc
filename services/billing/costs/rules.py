"""Pure rules of the cost of goods: which price a call's model has, and what the call cost.

A call is priced by the model's price version in force at its `occurredAt` (the
latest `effectiveFrom` at or before it; of two equal, the later added), to 8
decimal places, half-up:

    (promptTokens - cachedPromptTokens) * inputPer1M
  + cachedPromptTokens * cachedInputPer1M
  + completionTokens * outputPer1M,  all over 1,000,000

`promptTokens` includes the cached ones and `completionTokens` the reasoning ones, as
the provider reports them, so neither is counted twice and reasoning tokens are
priced as output. A call whose model has no version in force is *unpriced*: its
cost is None, never 0.

Which name of the book a model matches: the model's own name first; then the
name without a dated snapshot suffix (`gpt-4o-2024-08-06` -> `gpt-4o`,
`gpt-4-0613` -> `gpt-4`), the first of the two with a version in force at the
call's instant. Not any shorter prefix: `gpt-4o-mini` is another model than
`gpt-4o`, and pricing it as one would be wrong without saying so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from contracts import pricing

EIGHT_PLACES = Decimal("0.00000001")
PER_MILLION = Decimal(1_000_000)
# The most a price per 1M tokens may be (the dearest model today asks a few hundred).
MAX_RATE = Decimal("100000")

# A dated snapshot's suffix: `-YYYY-MM-DD`, or `-MMDD` (the older models). [0-9], not \d:
# the same pattern runs in PostgreSQL (`regexp_replace`) for rows written before calls were.
SNAPSHOT_SUFFIX = "-([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4})$"
_SNAPSHOT = re.compile(SNAPSHOT_SUFFIX)


def model_stem(model: str) -> str:
    """The model without its dated snapshot suffix: the name margins are grouped by."""
    stem = _SNAPSHOT.sub("", model)
    return stem or model


def price_names(model: str) -> tuple[str, ...]:
    """The names of the book a model is priced by, in order: its own, then its stem."""
    stem = model_stem(model)
    return (model,) if stem == model else (model, stem)


@dataclass(frozen=True, slots=True)
class Rates:
    """A model's prices per 1M tokens."""

    input_per_1m: Decimal
    cached_input_per_1m: Decimal
    output_per_1m: Decimal


@dataclass(frozen=True, slots=True)
class Tokens:
    """A call's token figures, as the provider reports them (see the module's docstring)."""

    prompt: int
    cached_prompt: int
    completion: int
    reasoning: int = 0


def provider_cost(rates: Rates, tokens: Tokens) -> Decimal:
    """What the provider charges for the call at these rates, to 8 places, half-up."""
    uncached = tokens.prompt - tokens.cached_prompt
    total = (
        uncached * rates.input_per_1m
        + tokens.cached_prompt * rates.cached_input_per_1m
        + tokens.completion * rates.output_per_1m
    )
    return (total / PER_MILLION).quantize(EIGHT_PLACES, rounding=ROUND_HALF_UP)


def format_cost(amount: Decimal) -> str:
    """A provider cost on the wire: a decimal string with 8 places."""
    return str(amount.quantize(EIGHT_PLACES, rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One version of a model's price: in force from `effective_from` on."""

    model_price_id: UUID
    model: str
    rates: Rates
    effective_from: datetime
    sequence: int = 0  # order of addition: breaks ties between equal effectiveFroms


class ModelBook:
    """The versions of the price book a batch needs, by model name."""

    def __init__(self, versions: Iterable[ModelPrice]) -> None:
        self._by_model: dict[str, list[ModelPrice]] = {}
        for version in versions:
            self._by_model.setdefault(version.model, []).append(version)

    def price_for(self, model: str, instant: datetime) -> ModelPrice | None:
        """The version pricing a call of `model` at `instant` (see the module's docstring)."""
        for name in price_names(model):
            found = pricing.in_force(
                self._by_model.get(name, ()), instant, tie_break=lambda v: v.sequence
            )
            if found is not None:
                return found
        return None


@dataclass(frozen=True, slots=True)
class Call:
    """One LLM call as billing keeps it: who, which model, how it ended, what it cost us."""

    event_id: UUID
    company_id: UUID
    model: str
    outcome: str
    generation_id: UUID | None
    tokens: Tokens
    usage_source: str
    occurred_at: datetime
    provider_cost: Decimal | None  # None: no price in force for its model (unpriced)
    model_price_id: UUID | None

    @property
    def model_stem(self) -> str:
        return model_stem(self.model)

    @property
    def billed(self) -> bool:
        return self.outcome == "billed"

    def priced(self, price: ModelPrice | None) -> Call:
        """The call at `price` (None: unpriced)."""
        if price is None:
            return replace(self, provider_cost=None, model_price_id=None)
        return replace(
            self,
            provider_cost=provider_cost(price.rates, self.tokens),
            model_price_id=price.model_price_id,
        )
