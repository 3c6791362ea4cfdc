"""Pure rules of the price book: which version is in force at an instant.

Versions are only ever added. The version in force at an instant is the one
with the latest `effectiveFrom` at or before it (of two with the same
`effectiveFrom`, the later added). A company with no version of its own in
force pays the default price in force then. The environment's price seeds the
defaults once, on a book that has none; later defaults are set like any price,
by an operator (a replica restarted with an old environment must not bring an old
price back for everyone).

A version starts at the request's own time or later, and never before usage the
book has already priced: history is never re-priced.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import Field

from contracts import pricing
from services.billing.ledger.rules import Pricing

# The first default version is in force since long before any event.
DEFAULT_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Namespace of the default versions' priceIds (uuid5): the same in every process.
DEFAULT_PRICE_NAMESPACE = UUID("6f1d3c52-5b8e-4f0e-9a57-3c1f2b7e8d40")


# A price as an operator may set it, by the API or the environment: at least 0, at most 4
# places ("0.1500"); a float's binary noise is refused, not rounded.
PriceAmount = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=4)]
MarginPercent = Annotated[Decimal, Field(ge=0, le=10_000, max_digits=9, decimal_places=4)]


class RetroactivePrice(ValueError):
    """An effectiveFrom before the moment the price is set: history is never re-priced."""


# The most questions one generation asks for (the contract's `numberOfQuestions`, 1 to 50).
MAX_QUESTIONS_PER_GENERATION = 50


class UnbillablePrice(ValueError):
    """A price at which the largest generation would cost more than the ledger holds."""


def check_billable(price: Pricing) -> None:
    """`UnbillablePrice` unless every generation the contract allows can be billed at it."""
    try:
        price.cost(MAX_QUESTIONS_PER_GENERATION)
    except pricing.PriceOutOfRange as exc:
        raise UnbillablePrice(
            f"{MAX_QUESTIONS_PER_GENERATION} questions at this price cost more than "
            f"{pricing.MAX_COST}, the most a usage row holds"
        ) from exc


@dataclass(frozen=True, slots=True)
class PriceVersion:
    price_id: UUID
    company_id: UUID | None  # None: the default price
    pricing: Pricing
    effective_from: datetime
    sequence: int = 0  # order of addition: breaks ties between equal effectiveFroms

    @property
    def is_default(self) -> bool:
        return self.company_id is None


def _number(value: Decimal) -> str:
    """`0.10` and `0.1000` are the same price: one spelling for the id."""
    return f"{value.normalize():f}"


def default_price_id(pricing: Pricing, effective_from: datetime) -> UUID:
    """The priceId of a default version: uuid5 of its price, margin and effectiveFrom.

    `default:<price per 10>:<margin percent>:<effectiveFrom, ISO 8601 UTC>` under
    DEFAULT_PRICE_NAMESPACE; the environment's first default (0.10, 0%) is thus
    `uuid5(DEFAULT_PRICE_NAMESPACE, "default:0.1:0:1970-01-01T00:00:00+00:00")`.
    """
    name = (
        f"default:{_number(pricing.price_per_10_questions)}:"
        f"{_number(pricing.profit_margin_percent)}:"
        f"{effective_from.astimezone(UTC).isoformat()}"
    )
    return uuid.uuid5(DEFAULT_PRICE_NAMESPACE, name)


def environment_default(pricing: Pricing) -> PriceVersion:
    """The environment's price as the default in force since the epoch."""
    return PriceVersion(
        price_id=default_price_id(pricing, DEFAULT_EPOCH),
        company_id=None,
        pricing=pricing,
        effective_from=DEFAULT_EPOCH,
    )


def in_force(versions: Iterable[PriceVersion], instant: datetime) -> PriceVersion | None:
    """The version with the latest effectiveFrom at or before `instant`, if any."""
    return pricing.in_force(versions, instant, tie_break=lambda v: v.sequence)


def check_not_retroactive(effective_from: datetime, requested_at: datetime) -> None:
    """A version starts at the request's own time or later."""
    if effective_from < requested_at:
        raise RetroactivePrice(
            f"effectiveFrom {effective_from.isoformat()} is before now "
            f"({requested_at.isoformat()}): a price takes effect from now or later, "
            "history is never re-priced"
        )


def check_after_billed(effective_from: datetime, last_billed: datetime | None) -> None:
    """A version starts after every generation the book has already priced.

    Checked once the price lock is held (no batch pricing then): a generation whose
    `occurredAt` is at or after `effectiveFrom` but was billed while the request waited
    for the lock would otherwise sit in the book under a version that did not price it.
    """
    if last_billed is not None and effective_from <= last_billed:
        raise RetroactivePrice(
            f"effectiveFrom {effective_from.isoformat()} is not after usage already billed "
            f"(at {last_billed.isoformat()}): history is never re-priced; choose a later "
            "effectiveFrom"
        )


def latest_default(defaults: Sequence[PriceVersion]) -> PriceVersion | None:
    return max(defaults, key=lambda v: (v.effective_from, v.sequence), default=None)


@dataclass(frozen=True)
class PriceBook:
    """The versions a batch needs: its companies' own, and the defaults."""

    by_company: dict[UUID, list[PriceVersion]]
    defaults: list[PriceVersion]

    @classmethod
    def of(cls, versions: Iterable[PriceVersion]) -> PriceBook:
        by_company: dict[UUID, list[PriceVersion]] = {}
        defaults: list[PriceVersion] = []
        for version in versions:
            if version.company_id is None:
                defaults.append(version)
            else:
                by_company.setdefault(version.company_id, []).append(version)
        return cls(by_company, defaults)

    def price_at(self, company_id: UUID, instant: datetime) -> PriceVersion | None:
        """The company's version in force at `instant`, else the default then.

        None only before billing first started on this database and recorded the
        environment's price as the default.
        """
        own = in_force(self.by_company.get(company_id, ()), instant)
        return own if own is not None else in_force(self.defaults, instant)
