"""What a generation costs. Pure, in Decimal."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

FOUR_PLACES = Decimal("0.0001")
MAX_COST = Decimal("999999.9999")  # DECIMAL(10, 4)


class PriceOutOfRange(ValueError):
    """The cost does not fit the ledger's DECIMAL(10, 4)."""


@dataclass(frozen=True)
class Pricing:
    price_per_10_questions: Decimal = Decimal("0.10")
    profit_margin_percent: Decimal = Decimal("0")

    def cost(self, question_count: int) -> Decimal:
        """`count / 10 * price`, plus the margin, rounded half-up to 4 places."""
        return _cost(self.price_per_10_questions, self.profit_margin_percent, question_count)


@lru_cache(maxsize=4096)
def _cost(price_per_10: Decimal, margin_percent: Decimal, question_count: int) -> Decimal:
    # Remembered: billing asks the price of the same few counts, twice per event.
    base = Decimal(question_count) / Decimal(10) * price_per_10
    cost = (base * (1 + margin_percent / Decimal(100))).quantize(
        FOUR_PLACES, rounding=ROUND_HALF_UP
    )
    if cost > MAX_COST:
        raise PriceOutOfRange(f"cost {cost} of {question_count} questions exceeds {MAX_COST}")
    return cost


def format_money(amount: Decimal) -> str:
    """Money on the wire: a decimal string with 4 places."""
    return str(amount.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP))
