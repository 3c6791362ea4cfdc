"""Pure rules of the budget guard: periods, the price in force, what a request may cost.

The price in force at an instant is the company's own version with the latest
`effectiveFrom` at or before it, else the default version in force then (as in
billing's price book; two versions with one `effectiveFrom`: the one announced
later). A request is reserved at its worst case, `numberOfQuestions` at the
price in force now; once answered, it costs the questions delivered at the price
of the generation's `occurredAt`. Both with the one pricing rule billing bills
with (`contracts.pricing`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from contracts.pricing import in_force, question_cost

# The contract's default price: what a company pays before billing has announced any
# version (billing announces its environment's price as the default when it starts).
FALLBACK_PRICE_PER_10_QUESTIONS = Decimal("0.10")
FALLBACK_PROFIT_MARGIN_PERCENT = Decimal("0")


def period_spent(settled: Decimal, unfolded: Decimal, billed: Decimal) -> Decimal:
    """What a period has spent, as a reservation counts it (`store.RESERVE` says it in SQL).

    The service's own count of every generation it recorded in the period, folded
    (`settled`) or not yet (`unfolded`), whether or not its company had a limit then;
    billing's report is a floor only: it lags, and it never knows more than we wrote.
    """
    return max(settled + unfolded, billed)


class BudgetExceeded(Exception):
    """The request's worst-case cost does not fit what is left of the period's limit."""

    def __init__(self, company_id: UUID, period: str, cost: Decimal) -> None:
        super().__init__(
            f"the monthly budget of period {period} has no room for this request "
            f"(worst case {cost}); nothing was generated or billed"
        )
        self.company_id = company_id
        self.period = period
        self.cost = cost


@dataclass(frozen=True, slots=True)
class PriceVersion:
    price_id: UUID
    company_id: UUID | None  # None: the default price
    price_per_10_questions: Decimal
    profit_margin_percent: Decimal
    effective_from: datetime
    announced_at: datetime

    def cost(self, question_count: int) -> Decimal:
        return question_cost(
            question_count, self.price_per_10_questions, self.profit_margin_percent
        )


class HoldLost(Exception):
    """The request's reservation was gone when its generation came to be recorded.

    It outlived its hold (it expired and was released, and its room may have gone
    to another request): recording the generation now could pass the limit.
    """

    def __init__(self, company_id: UUID, period: str) -> None:
        super().__init__(
            f"the request outlived its budget reservation in period {period}; "
            "its generation was not recorded"
        )
        self.company_id = company_id
        self.period = period


@dataclass(frozen=True, slots=True)
class Settlement:
    """What every generation row carries: its cost, the period it counts in, and the
    reservations it settles (None when its company had no limit, or was not in
    `credit_only`, when it was asked); `credit_spend`: whether it counts as not yet
    billed against the company's credits until billing names it as recorded."""

    reservation_id: UUID | None
    cost: Decimal
    period: str
    credit_reservation_id: UUID | None = None
    credit_spend: bool = False


@dataclass(frozen=True, slots=True)
class Terms:
    """What the guard knows of one company: whether it has a limit, its prices, and its
    credit mode (as billing last published it)."""

    limited: bool
    versions: tuple[PriceVersion, ...] = ()
    credit_mode: str = "none"


def _in_force(versions: Iterable[PriceVersion], instant: datetime) -> PriceVersion | None:
    return in_force(versions, instant, tie_break=lambda v: v.announced_at)


def price_at(terms: Terms, company_id: UUID, instant: datetime) -> PriceVersion | None:
    """The company's own version in force at `instant`, else the default then, else None."""
    own = _in_force((v for v in terms.versions if v.company_id == company_id), instant)
    if own is not None:
        return own
    return _in_force((v for v in terms.versions if v.company_id is None), instant)


def cost_at(terms: Terms, company_id: UUID, instant: datetime, question_count: int) -> Decimal:
    """`question_count` questions at the price in force at `instant`, margin included."""
    version = price_at(terms, company_id, instant)
    if version is None:
        return question_cost(
            question_count, FALLBACK_PRICE_PER_10_QUESTIONS, FALLBACK_PROFIT_MARGIN_PERCENT
        )
    return version.cost(question_count)
