"""BILLING_CURRENCY: an ISO 4217 code, USD unless set; anything else refused at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.billing.config import Settings


def test_the_default_currency_is_usd() -> None:
    assert Settings().billing_currency == "USD"


def test_the_currency_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_CURRENCY", "eur")
    assert Settings().billing_currency == "EUR"


@pytest.mark.parametrize("value", ["", "US", "USDX", "ZZZ", "XAU", "XXX", "€"])
def test_anything_but_a_currency_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BILLING_CURRENCY", value)
    with pytest.raises(ValidationError, match="billing_currency"):
        Settings()
