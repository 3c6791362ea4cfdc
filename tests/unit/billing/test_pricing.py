from decimal import Decimal

import pytest

from services.billing.ledger.rules import PriceOutOfRange, Pricing, format_money


def test_ten_questions_at_the_defaults_cost_ten_cents() -> None:
    assert Pricing().cost(10) == Decimal("0.1000")


@pytest.mark.parametrize(
    ("count", "expected"),
    [(1, "0.0100"), (7, "0.0700"), (12, "0.1200"), (50, "0.5000"), (1000, "10.0000")],
)
def test_cost_is_proportional_to_the_questions(count: int, expected: str) -> None:
    assert Pricing().cost(count) == Decimal(expected)


def test_margin_is_added_on_top_of_the_base() -> None:
    pricing = Pricing(Decimal("0.10"), Decimal("25"))
    assert pricing.cost(10) == Decimal("0.1250")


def test_rounding_is_half_up_to_four_places() -> None:
    # 1/10 * 0.00125 = 0.000125 -> 0.0001 (down); 3/10 * 0.00125 = 0.000375 -> 0.0004 (half up)
    pricing = Pricing(Decimal("0.00125"))
    assert pricing.cost(1) == Decimal("0.0001")
    assert pricing.cost(3) == Decimal("0.0004")
    # exactly half: 0.00005 -> 0.0001
    assert Pricing(Decimal("0.0005")).cost(1) == Decimal("0.0001")


def test_cost_is_decimal_never_float() -> None:
    assert isinstance(Pricing(Decimal("0.10"), Decimal("33.3")).cost(3), Decimal)
    assert Pricing(Decimal("0.10"), Decimal("33.3")).cost(3) == Decimal("0.0400")


def test_cost_beyond_the_ledger_column_is_refused() -> None:
    with pytest.raises(PriceOutOfRange):
        Pricing(Decimal("100000")).cost(1000)


def test_money_is_a_four_place_string() -> None:
    assert format_money(Decimal("0.1")) == "0.1000"
    assert format_money(Decimal("12")) == "12.0000"
