"""Billing's settings: the environment's price passes the checks of a price set by the API."""

from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.billing.config import Settings


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        # 50 questions (the most one generation asks) would cost more than a usage row holds:
        # accepted, every generation would be dead-lettered, unreplayably.
        ({"PRICE_PER_10_QUESTIONS": "200000"}, "PRICE_PER_10_QUESTIONS"),
        ({"PRICE_PER_10_QUESTIONS": "100000", "PROFIT_MARGIN_PERCENT": "100"}, "PROFIT_MARGIN"),
        ({"PRICE_PER_10_QUESTIONS": "0.12345"}, "price_per_10_questions"),
        ({"PRICE_PER_10_QUESTIONS": "-0.10"}, "price_per_10_questions"),
        ({"PROFIT_MARGIN_PERCENT": "10001"}, "profit_margin_percent"),
        ({"PROFIT_MARGIN_PERCENT": "0.00001"}, "profit_margin_percent"),
    ],
)
def test_a_price_the_api_would_refuse_stops_billing_at_start(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=named):
        Settings()


def test_the_highest_billable_price_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRICE_PER_10_QUESTIONS", "199999.9999")
    assert Settings().price_per_10_questions == Decimal("199999.9999")
