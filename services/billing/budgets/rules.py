"""Pure rules of budgets: periods, thresholds reached, what remains."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal


def period_of(instant: datetime) -> str:
    """The billing period of an instant: its calendar month in UTC, `YYYY-MM`."""
    return instant.astimezone(UTC).strftime("%Y-%m")


def normal_thresholds(thresholds: Iterable[int]) -> list[int]:
    """Ascending, each once."""
    return sorted(set(thresholds))


def thresholds_reached(
    spent: Decimal, monthly_limit: Decimal | None, thresholds: Iterable[int]
) -> list[int]:
    """The thresholds (percent of the limit) that `spent` has reached; none without a limit."""
    if monthly_limit is None:
        return []
    return [t for t in normal_thresholds(thresholds) if spent * 100 >= monthly_limit * t]


def remaining(monthly_limit: Decimal | None, spent: Decimal) -> Decimal | None:
    """What is left of the limit (never below zero); None without a limit."""
    if monthly_limit is None:
        return None
    return max(monthly_limit - spent, Decimal("0"))
