"""Pure rules of budgets: thresholds reached, what remains (periods: `contracts.periods`)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal


def normal_thresholds(thresholds: Iterable[int]) -> list[int]:
    """Ascending, each once."""
    return sorted(set(thresholds))


def thresholds_reached(
    spent: Decimal, monthly_limit: Decimal | None, thresholds: Iterable[int]
) -> list[int]:
    """The thresholds (percent of the limit) that `spent` has reached.

    None without a limit, and none at a limit of zero: it refuses every generation, and
    no spend crosses a percentage of nothing.
    """
    if monthly_limit is None or monthly_limit <= 0:
        return []
    return [t for t in normal_thresholds(thresholds) if spent * 100 >= monthly_limit * t]


def remaining(monthly_limit: Decimal | None, spent: Decimal) -> Decimal | None:
    """What is left of the limit (never below zero); None without a limit."""
    if monthly_limit is None:
        return None
    return max(monthly_limit - spent, Decimal("0"))
