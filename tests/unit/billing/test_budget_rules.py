from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from services.billing.budgets.rules import (
    normal_thresholds,
    period_of,
    remaining,
    thresholds_reached,
)


def test_a_period_is_the_utc_calendar_month() -> None:
    assert period_of(datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)) == "2026-01"
    assert period_of(datetime(2026, 2, 1, tzinfo=UTC)) == "2026-02"
    # 00:30 on 1 February in UTC+1 is still January in UTC.
    assert period_of(datetime(2026, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))) == "2026-01"


def test_thresholds_are_reached_at_their_percent_of_the_limit_exactly() -> None:
    limit = Decimal("1.0000")
    assert thresholds_reached(Decimal("0.4999"), limit, [50, 80, 100]) == []
    assert thresholds_reached(Decimal("0.5000"), limit, [100, 50, 80]) == [50]
    assert thresholds_reached(Decimal("0.8000"), limit, [50, 80, 100]) == [50, 80]
    assert thresholds_reached(Decimal("1.2000"), limit, [50, 80, 100]) == [50, 80, 100]


def test_no_limit_reaches_no_threshold() -> None:
    assert thresholds_reached(Decimal("1000"), None, [1, 50, 100]) == []


def test_thresholds_are_kept_ascending_and_once() -> None:
    assert normal_thresholds([100, 50, 80, 50]) == [50, 80, 100]


def test_remaining_never_goes_below_zero() -> None:
    assert remaining(Decimal("1.0000"), Decimal("0.3000")) == Decimal("0.7000")
    assert remaining(Decimal("1.0000"), Decimal("1.5000")) == Decimal("0")
    assert remaining(None, Decimal("1.5000")) is None
