"""Statements' pure rules: periods, where late usage goes, adjustment amounts, line cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.billing.statements.rules import (
    Billed,
    InvalidPeriod,
    LineCursor,
    Period,
    bill_in,
    check_amount,
    check_reason,
)

NOV = Period(2026, 11)
DEC = Period(2026, 12)


@pytest.mark.parametrize(
    "text",
    [
        "2026-13",
        "26-11",
        "2026-00",
        "2026-1",
        "2026/11",
        "",
        "0000-05",
        "\uff12\uff10\uff12\uff16-11",  # fullwidth digits
        "2026-11\n",
    ],
)
def test_a_malformed_period_is_refused(text: str) -> None:
    with pytest.raises(InvalidPeriod):
        Period.parse(text)


def test_a_period_is_written_and_read_back() -> None:
    assert Period.parse("2026-11") == NOV
    assert str(Period(987, 3)) == "0987-03"


def test_a_period_is_the_utc_month_of_an_instant() -> None:
    just_before = datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert Period.of(just_before) == NOV
    assert Period.of(datetime(2026, 12, 1, tzinfo=UTC)) == DEC


def test_periods_roll_over_the_year() -> None:
    assert DEC.next() == Period(2027, 1)
    assert Period(2027, 1).previous() == DEC
    assert NOV.end == datetime(2026, 12, 1, tzinfo=UTC)


def test_a_period_has_ended_from_the_first_instant_of_the_next() -> None:
    assert not NOV.has_ended(datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC))
    assert NOV.has_ended(datetime(2026, 12, 1, tzinfo=UTC))


def test_lock_keys_differ_per_period() -> None:
    assert len({Period(2026, m).lock_key for m in range(1, 13)} | {DEC.next().lock_key}) == 13


def test_usage_of_an_open_period_stays_in_it() -> None:
    assert bill_in(NOV, closed=set(), recorded_at=datetime(2027, 3, 1, tzinfo=UTC)) == Billed(NOV)


def test_usage_of_a_closed_period_is_late_in_the_period_it_is_recorded_in() -> None:
    recorded = datetime(2027, 2, 10, tzinfo=UTC)
    assert bill_in(NOV, {NOV}, recorded) == Billed(Period(2027, 2), late=True)


def test_late_usage_skips_closed_periods_and_never_goes_back() -> None:
    # A recording clock behind the closer's: still after the period it missed.
    assert bill_in(NOV, {NOV}, datetime(2026, 11, 30, tzinfo=UTC)) == Billed(DEC, late=True)
    assert bill_in(NOV, {NOV, DEC}, datetime(2026, 12, 31, tzinfo=UTC)) == Billed(
        Period(2027, 1), late=True
    )


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("-1.0000", "-1.0000"), ("2.5", "2.5000"), ("0.0001", "0.0001"), ("1.00000", "1.0000")],
)
def test_an_amount_of_at_most_four_places_is_taken(amount: str, expected: str) -> None:
    assert str(check_amount(Decimal(amount))) == expected


@pytest.mark.parametrize(
    "amount", ["0", "0.0000", "-0", "0.00001", "1.23456", "NaN", "Infinity", "100000000"]
)
def test_a_zero_too_precise_or_unbounded_amount_is_refused(amount: str) -> None:
    with pytest.raises(ValueError, match="must"):
        check_amount(Decimal(amount))


def test_a_reason_of_only_spaces_is_refused() -> None:
    with pytest.raises(ValueError, match="must say something"):
        check_reason("   ")
    with pytest.raises(ValueError, match="NUL"):
        check_reason("a\x00b")
    assert check_reason("refund: duplicate generation") == "refund: duplicate generation"


def test_a_line_cursor_is_scoped_to_its_statement() -> None:
    company, other = uuid.uuid4(), uuid.uuid4()
    scope = LineCursor.scope(NOV, company)
    assert scope != LineCursor.scope(NOV, other)
    assert scope != LineCursor.scope(DEC, company)
    assert LineCursor(Decimal("0.3000"), uuid.UUID(int=1)).key() == [
        "0.3000",
        "00000000-0000-0000-0000-000000000001",
    ]
