"""Billing's settings: the environment's price passes the checks of a price set by the API."""

from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.billing.config import Settings
from services.billing.main import usage_reader


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


def test_reconciliation_is_off_without_an_admin_key_and_empty_means_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert usage_reader(Settings()) is None
    # Compose passes unset variables through as empty.
    for name in ("OPENAI_ADMIN_KEY", "OPENAI_ADMIN_BASE_URL", "OPENAI_PROJECT_ID"):
        monkeypatch.setenv(name, "")
    settings = Settings()
    assert settings.openai_admin_key is None
    assert settings.openai_project_id is None
    assert settings.openai_admin_base_url == "https://api.openai.com/v1"
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-abc")
    monkeypatch.setenv("RECONCILIATION_TOLERANCE_PERCENT", "2.5")
    settings = Settings()
    assert usage_reader(settings) is not None
    assert settings.reconciliation_tolerance_percent == Decimal("2.5")
    assert "sk-admin-abc" not in repr(settings)


@pytest.mark.parametrize("tolerance", ["-1", "100.5", "0.00001"])
def test_a_tolerance_out_of_range_stops_billing_at_start(
    monkeypatch: pytest.MonkeyPatch, tolerance: str
) -> None:
    monkeypatch.setenv("RECONCILIATION_TOLERANCE_PERCENT", tolerance)
    with pytest.raises(ValidationError, match="reconciliation_tolerance_percent"):
        Settings()
