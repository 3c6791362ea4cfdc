"""The margin's pure rules: a batch's deltas, how a range is cut, a group's figures."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.billing.costs.margins import (
    InvalidRange,
    MarginAmounts,
    MarginDeltas,
    RangeCut,
    call_amounts,
    cut_into_months,
    deltas_of,
    figures,
    repricing,
    sorted_rows,
)
from services.billing.costs.rules import Call, Tokens

COMPANY = uuid.UUID("00000000-0000-4000-8000-000000000001")
AT = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)


def call(outcome: str = "billed", cost: str | None = "0.00100000", model: str = "gpt-4o") -> Call:
    return Call(
        uuid.uuid4(),
        COMPANY,
        model,
        outcome,
        uuid.uuid4() if outcome == "billed" else None,
        Tokens(100, 40, 200, 10),
        "provider",
        AT,
        None if cost is None else Decimal(cost),
        None if cost is None else uuid.uuid4(),
    )


def test_a_batch_adds_revenue_and_provider_cost_under_one_key_per_company_day_and_model() -> None:
    deltas = deltas_of(
        [(COMPANY, "gpt-4o-2024-08-06", AT, Decimal("0.1000"))],
        [call(), call("timeout"), call(cost=None)],
    )
    key = (COMPANY, date(2026, 3, 31), "gpt-4o")
    assert list(deltas.days) == [key]
    assert list(deltas.periods) == [(COMPANY, "2026-03", "gpt-4o")]
    assert list(deltas.model_days) == [(date(2026, 3, 31), "gpt-4o")]
    amounts = deltas.days[key]
    assert amounts.generations == 1
    assert amounts.revenue == Decimal("0.1000")
    assert amounts.calls == 3
    assert amounts.unpriced_calls == 1
    assert amounts.provider_cost == Decimal("0.00200000")
    assert amounts.unbilled_calls == 1
    assert amounts.unbilled_provider_cost == Decimal("0.00100000")
    assert amounts.cached_prompt_tokens == 120
    assert deltas.periods[(COMPANY, "2026-03", "gpt-4o")] == amounts


def test_days_are_utc_days() -> None:
    deltas = MarginDeltas()
    deltas.add(COMPANY, "m", datetime.fromisoformat("2026-04-01T01:00:00+02:00"), MarginAmounts(1))
    assert list(deltas.days) == [(COMPANY, date(2026, 3, 31), "m")]


def test_repricing_changes_the_rollups_by_exactly_the_difference() -> None:
    before = call("failed", cost=None)
    priced = call_amounts(before)
    after = replace(before, provider_cost=Decimal("0.00300000"), model_price_id=uuid.uuid4())
    change = repricing(before, after)
    assert change == MarginAmounts(
        unpriced_calls=-1,
        provider_cost=Decimal("0.00300000"),
        unbilled_provider_cost=Decimal("0.00300000"),
    )
    assert priced + change == call_amounts(after)
    assert repricing(after, after) == MarginAmounts()


def test_rows_are_written_in_key_order_and_unchanged_ones_are_left_out() -> None:
    other = uuid.UUID("00000000-0000-4000-8000-000000000000")
    deltas = MarginDeltas()
    deltas.add(COMPANY, "b", AT, MarginAmounts(1))
    deltas.add(other, "a", AT, MarginAmounts(1))
    deltas.add(COMPANY, "a", AT, MarginAmounts())
    assert [key for key, _ in sorted_rows(deltas.days)] == [
        (other, date(2026, 3, 31), "a"),
        (COMPANY, date(2026, 3, 31), "b"),
    ]


@pytest.mark.parametrize(
    ("first", "last", "cut"),
    [
        (date(2026, 3, 1), date(2026, 3, 31), RangeCut(("2026-03",), ())),
        (
            date(2026, 3, 10),
            date(2026, 5, 20),
            RangeCut(
                ("2026-04",),
                ((date(2026, 3, 10), date(2026, 3, 31)), (date(2026, 5, 1), date(2026, 5, 20))),
            ),
        ),
        (
            date(2026, 3, 10),
            date(2026, 4, 20),
            RangeCut((), ((date(2026, 3, 10), date(2026, 4, 20)),)),
        ),
        (date(2026, 3, 5), date(2026, 3, 5), RangeCut((), ((date(2026, 3, 5), date(2026, 3, 5)),))),
        (
            date(2025, 12, 1),
            date(2026, 2, 28),
            RangeCut(("2025-12", "2026-01", "2026-02"), ()),
        ),
        (
            date(2026, 2, 1),
            date(2026, 3, 30),
            RangeCut(("2026-02",), ((date(2026, 3, 1), date(2026, 3, 30)),)),
        ),
    ],
)
def test_a_range_is_read_as_its_whole_months_and_the_days_around_them(
    first: date, last: date, cut: RangeCut
) -> None:
    assert cut_into_months(first, last) == cut


def test_a_range_backwards_or_too_long_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRange) as backwards:
        cut_into_months(date(2026, 3, 2), date(2026, 3, 1))
    assert backwards.value.field == "from"
    with pytest.raises(InvalidRange) as long:
        cut_into_months(date(2025, 1, 1), date(2026, 3, 1))
    assert long.value.field == "to"


def test_a_groups_margin_and_its_percent() -> None:
    shown = figures(
        MarginAmounts(
            generations=3,
            revenue=Decimal("0.3000"),
            calls=4,
            provider_cost=Decimal("0.11250000"),
            unbilled_calls=1,
            unbilled_provider_cost=Decimal("0.01250000"),
        )
    )
    assert shown.provider_cost == Decimal("0.11250000")
    assert shown.unbilled_provider_cost == Decimal("0.01250000")
    assert shown.margin == Decimal("0.18750000")
    assert shown.margin_percent == Decimal("62.50")


def test_only_unpriced_calls_leave_the_cost_unknown_not_zero() -> None:
    shown = figures(
        MarginAmounts(generations=1, revenue=Decimal("0.1000"), calls=2, unpriced_calls=2)
    )
    assert shown.provider_cost is None
    assert shown.unbilled_provider_cost is None
    assert shown.margin is None
    assert shown.margin_percent is None
    assert shown.unpriced_calls == 2


def test_no_revenue_has_no_margin_percent() -> None:
    shown = figures(
        MarginAmounts(
            calls=1,
            unbilled_calls=1,
            provider_cost=Decimal("0.5"),
            unbilled_provider_cost=Decimal("0.5"),
        )
    )
    assert shown.margin == Decimal("-0.5")
    assert shown.margin_percent is None
