import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from services.billing.budgets.rules import (
    normal_thresholds,
    remaining,
    thresholds_reached,
)
from services.billing.budgets.spend import deliveries_for
from services.billing.budgets.store import PeriodSpend


def test_thresholds_are_reached_at_their_percent_of_the_limit_exactly() -> None:
    limit = Decimal("1.0000")
    assert thresholds_reached(Decimal("0.4999"), limit, [50, 80, 100]) == []
    assert thresholds_reached(Decimal("0.5000"), limit, [100, 50, 80]) == [50]
    assert thresholds_reached(Decimal("0.8000"), limit, [50, 80, 100]) == [50, 80]
    assert thresholds_reached(Decimal("1.2000"), limit, [50, 80, 100]) == [50, 80, 100]


def test_no_limit_reaches_no_threshold() -> None:
    assert thresholds_reached(Decimal("1000"), None, [1, 50, 100]) == []


def test_a_zero_limit_reaches_no_threshold_whatever_is_spent() -> None:
    # A limit of 0 refuses every generation; no spend crosses a percentage of nothing.
    for spent in (Decimal("0"), Decimal("0.0000"), Decimal("0.1000"), Decimal("1000")):
        assert thresholds_reached(spent, Decimal("0.0000"), [1, 50, 80, 100]) == []
    assert remaining(Decimal("0.0000"), Decimal("0.1000")) == Decimal("0")


def test_thresholds_are_kept_ascending_and_once() -> None:
    assert normal_thresholds([100, 50, 80, 50]) == [50, 80, 100]


def test_remaining_never_goes_below_zero() -> None:
    assert remaining(Decimal("1.0000"), Decimal("0.3000")) == Decimal("0.7000")
    assert remaining(Decimal("1.0000"), Decimal("1.5000")) == Decimal("0")
    assert remaining(None, Decimal("1.5000")) is None


def test_a_zero_limit_enqueues_no_threshold_webhook() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    spend = PeriodSpend(
        company_id=uuid.UUID(int=1),
        period="2026-11",
        spent=Decimal("0.1000"),
        monthly_limit=Decimal("0.0000"),
        thresholds=[50, 80, 100],
        has_webhook=True,
    )
    assert deliveries_for(spend, now) == []
    # The same spend against a limit it crosses enqueues one delivery per threshold.
    reached = deliveries_for(replace(spend, monthly_limit=Decimal("0.1000")), now)
    assert [delivery.threshold for delivery in reached] == [50, 80, 100]
