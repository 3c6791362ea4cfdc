"""What a generation costs: one rule, for billing (what it bills) and the question service
(what it reserves against a budget before it calls the LLM); and which price version is
in force at an instant, for both.

`questionCount / 10 * pricePer10Questions`, plus the profit margin, rounded half-up to
4 places, in `Decimal`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol, TypeVar

from contracts.events import FOUR_PLACES

MAX_COST = Decimal("999999.9999")  # the ledger's DECIMAL(10, 4)


class PriceOutOfRange(ValueError):
    """The cost does not fit the ledger's DECIMAL(10, 4)."""


def question_cost(
    question_count: int, price_per_10_questions: Decimal, profit_margin_percent: Decimal
) -> Decimal:
    """`count / 10 * price`, plus the margin, rounded half-up to 4 places."""
    base = Decimal(question_count) / Decimal(10) * price_per_10_questions
    cost = (base * (1 + profit_margin_percent / Decimal(100))).quantize(
        FOUR_PLACES, rounding=ROUND_HALF_UP
    )
    if cost > MAX_COST:
        raise PriceOutOfRange(f"cost {cost} of {question_count} questions exceeds {MAX_COST}")
    return cost


class Versioned(Protocol):
    """A price version: in force from its `effectiveFrom` on."""

    @property
    def effective_from(self) -> datetime: ...


V = TypeVar("V", bound=Versioned)


def in_force(
    versions: Iterable[V], instant: datetime, tie_break: Callable[[V], int | datetime]
) -> V | None:
    """The version with the latest effectiveFrom at or before `instant`, if any.

    Of two with the same effectiveFrom, the one with the greater `tie_break` (the later
    added); of two equal in both, the first.
    """
    started = [version for version in versions if version.effective_from <= instant]
    return max(started, key=lambda v: (v.effective_from, tie_break(v)), default=None)
