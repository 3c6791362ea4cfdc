"""Pure rules of the margin: what a batch adds to each margin rollup, how a range is read,
and a group's figures.

Three rollups, all by the UTC day (or month) of the event's `occurredAt` and by the
model's stem (`rules.model_stem`: dated snapshots of a model are one model here):

- per company, day and model (`margin_days`): the truth the others agree with;
- per company, month and model (`margin_periods`): a month read a page of companies
  at a time, without touching its days;
- per day and model (`margin_model_days`): the margin by model or by day over
  every company, without touching the companies.

Revenue is the usage rows' billed `cost`; provider cost the calls' (priced ones).
A batch adds one delta per key, keys sorted, rollups always in this order, so no
two writers (batches, re-pricing) can deadlock on their rows.
"""

from __future__ import annotations

import calendar
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar
from uuid import UUID

from services.billing.costs.rules import Call, model_stem

ZERO = Decimal("0")
TWO_PLACES = Decimal("0.01")
MAX_DAYS = 400

K = TypeVar("K", bound=tuple[Any, ...])


@dataclass(frozen=True, slots=True)
class MarginAmounts:
    """What a margin rollup adds up: billed generations and LLM calls."""

    generations: int = 0
    revenue: Decimal = ZERO
    calls: int = 0
    unpriced_calls: int = 0
    provider_cost: Decimal = ZERO  # of the priced calls
    unbilled_calls: int = 0
    unbilled_provider_cost: Decimal = ZERO  # of the priced calls not billed
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: MarginAmounts) -> MarginAmounts:
        # Three times per event of every batch: the fields by position, not by `fields()`.
        return MarginAmounts(*map(operator.add, self.as_row(), other.as_row()))

    def __neg__(self) -> MarginAmounts:
        return MarginAmounts(*map(operator.neg, self.as_row()))

    def __sub__(self, other: MarginAmounts) -> MarginAmounts:
        return self + -other

    def as_row(self) -> tuple[Any, ...]:
        return _ROW(self)


SUMS = tuple(f.name for f in fields(MarginAmounts))
_ROW = operator.attrgetter(*SUMS)
NOTHING = MarginAmounts()


def revenue(cost: Decimal) -> MarginAmounts:
    """A usage row: one generation billed at `cost`."""
    return MarginAmounts(generations=1, revenue=cost)


def call_amounts(call: Call) -> MarginAmounts:
    """A call as the margin rollups count it, at its provider cost (None: unpriced)."""
    cost = call.provider_cost if call.provider_cost is not None else ZERO
    unbilled = not call.billed
    return MarginAmounts(
        calls=1,
        unpriced_calls=1 if call.provider_cost is None else 0,
        provider_cost=cost,
        unbilled_calls=1 if unbilled else 0,
        unbilled_provider_cost=cost if unbilled else ZERO,
        prompt_tokens=call.tokens.prompt,
        cached_prompt_tokens=call.tokens.cached_prompt,
        completion_tokens=call.tokens.completion,
        reasoning_tokens=call.tokens.reasoning,
    )


def repricing(before: Call, after: Call) -> MarginAmounts:
    """What re-pricing a call changes in its rollups: exactly the difference."""
    return call_amounts(after) - call_amounts(before)


def day_of(instant: datetime) -> date:
    return instant.astimezone(UTC).date()


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


@dataclass
class MarginDeltas:
    """What one batch (or one round of re-pricing) adds to each margin rollup, by key."""

    days: dict[tuple[UUID, date, str], MarginAmounts] = field(default_factory=dict)
    periods: dict[tuple[UUID, str, str], MarginAmounts] = field(default_factory=dict)
    model_days: dict[tuple[date, str], MarginAmounts] = field(default_factory=dict)

    def add(self, company_id: UUID, model: str, at: datetime, amounts: MarginAmounts) -> None:
        """`amounts` for the company, the model's stem and the UTC day of `at`."""
        stem = model_stem(model)
        day = day_of(at)
        _add(self.days, (company_id, day, stem), amounts)
        _add(self.periods, (company_id, month_of(day), stem), amounts)
        _add(self.model_days, (day, stem), amounts)

    def is_empty(self) -> bool:
        return not self.days


def _add(rows: dict[K, MarginAmounts], key: K, amounts: MarginAmounts) -> None:
    rows[key] = rows.get(key, NOTHING) + amounts


def sorted_rows(rows: dict[K, MarginAmounts]) -> list[tuple[K, MarginAmounts]]:
    """By key, without the keys nothing changed: the order every writer locks rows in."""
    return sorted(((key, value) for key, value in rows.items() if value != NOTHING), key=_key)


def _key(item: tuple[K, MarginAmounts]) -> K:
    return item[0]


def deltas_of(
    usage: Iterable[tuple[UUID, str, datetime, Decimal]], calls: Iterable[Call]
) -> MarginDeltas:
    """A batch's deltas: its new usage rows (company, model, createdAt, cost), its new calls."""
    deltas = MarginDeltas()
    for company_id, model, at, cost in usage:
        deltas.add(company_id, model, at, revenue(cost))
    for call in calls:
        deltas.add(call.company_id, call.model, call.occurred_at, call_amounts(call))
    return deltas


# ---------------------------------------------------------------- reading a range


class InvalidRange(ValueError):
    """A range the margin cannot answer; `field` names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RangeCut:
    """Days `[first, last]` as the whole months they cover and the days around them."""

    months: tuple[str, ...]
    # At most two runs of days, each `(first, last)` inclusive, outside those months.
    days: tuple[tuple[date, date], ...]


def check_range(first: date, last: date) -> None:
    if first > last:
        raise InvalidRange("from", "must not be after to")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidRange("to", f"a range holds at most {MAX_DAYS} days")


def cut_into_months(first: date, last: date) -> RangeCut:
    """Split `[first, last]` into whole calendar months and the days before and after."""
    check_range(first, last)
    start = first if first.day == 1 else _next_month(first)
    end = last + timedelta(days=1)  # exclusive
    end_month = end.replace(day=1)
    if start >= end_month:  # no whole month
        return RangeCut((), ((first, last),))
    months = []
    month = start
    while month < end_month:
        months.append(month_of(month))
        month = _next_month(month)
    days = []
    if first < start:
        days.append((first, start - timedelta(days=1)))
    if end_month < end:
        days.append((end_month, last))
    return RangeCut(tuple(months), tuple(days))


def _next_month(day: date) -> date:
    _, length = calendar.monthrange(day.year, day.month)
    return day.replace(day=1) + timedelta(days=length)


# ---------------------------------------------------------------- a group's figures


@dataclass(frozen=True)
class MarginFigures:
    """What one group (a company, a model, a day) earned and cost over a range."""

    revenue: Decimal
    provider_cost: Decimal | None  # None: no priced call (only unpriced ones, or none)
    unbilled_provider_cost: Decimal | None
    margin: Decimal | None
    margin_percent: Decimal | None  # None when revenue is 0 or the cost is not known
    calls: int
    unpriced_calls: int


def figures(amounts: MarginAmounts) -> MarginFigures:
    """The group's figures from its summed rollups."""
    priced = amounts.calls - amounts.unpriced_calls
    cost = amounts.provider_cost if priced > 0 else None
    margin = None if cost is None else amounts.revenue - cost
    percent = None
    if margin is not None and amounts.revenue != 0:
        percent = (margin / amounts.revenue * 100).quantize(TWO_PLACES, rounding=ROUND_HALF_UP)
    return MarginFigures(
        revenue=amounts.revenue,
        provider_cost=cost,
        unbilled_provider_cost=None if cost is None else amounts.unbilled_provider_cost,
        margin=margin,
        margin_percent=percent,
        calls=amounts.calls,
        unpriced_calls=amounts.unpriced_calls,
    )
