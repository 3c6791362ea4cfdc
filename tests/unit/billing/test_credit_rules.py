"""Prepaid credits' pure rules: the burn-down order, amounts, validation, the low-balance alert."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.billing.credits.rules import (
    Charge,
    Grant,
    burn_down,
    check_amount,
    check_reason,
    check_threshold,
    check_window,
    low_balance,
    low_balance_body,
    low_balance_event_id,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TOMORROW = NOW + timedelta(days=1)
LONG_AGO = NOW - timedelta(days=30)


def grant(
    remaining: str,
    *,
    priority: int = 10,
    expires_at: datetime | None = None,
    effective_at: datetime = LONG_AGO,
    grant_id: uuid.UUID | None = None,
) -> Grant:
    return Grant(
        grant_id=grant_id or uuid.uuid4(),
        remaining=Decimal(remaining),
        priority=priority,
        effective_at=effective_at,
        expires_at=expires_at,
    )


def charge(cost: str, at: datetime = NOW) -> Charge:
    return Charge(uuid.uuid4(), at, Decimal(cost))


def test_priority_1_first_then_the_one_that_expires_sooner() -> None:
    never_5 = grant("1.0000", priority=5)
    tomorrow_5 = grant("1.0000", priority=5, expires_at=TOMORROW)
    never_1 = grant("1.0000", priority=1)
    tomorrow_1 = grant("1.0000", priority=1, expires_at=TOMORROW)
    charges = [charge("0.5000", NOW + timedelta(seconds=n)) for n in range(8)]

    result = burn_down([never_5, tomorrow_5, never_1, tomorrow_1], charges)

    order = [draw.grant_id for draw in result.draws]
    expected = [tomorrow_1.grant_id] * 2 + [never_1.grant_id] * 2
    expected += [tomorrow_5.grant_id] * 2 + [never_5.grant_id] * 2
    assert order == expected
    assert all(left.remaining == 0 for left in result.left.values())


def test_ties_go_to_the_oldest_effective_then_the_grant_id() -> None:
    older = grant("1.0000", effective_at=LONG_AGO)
    newer = grant("1.0000", effective_at=LONG_AGO + timedelta(days=1))
    low_id = grant("1.0000", effective_at=LONG_AGO, grant_id=uuid.UUID(int=1))
    result = burn_down([newer, older, low_id], [charge("2.5000")])
    assert [d.grant_id for d in result.draws] == [low_id.grant_id, older.grant_id, newer.grant_id]
    assert [d.amount for d in result.draws] == [
        Decimal("1.0000"),
        Decimal("1.0000"),
        Decimal("0.5000"),
    ]


def test_one_row_draws_across_several_grants_and_what_they_lack_is_left_to_invoice() -> None:
    a, b = grant("0.0300", priority=1), grant("0.0500", priority=2)
    result = burn_down([a, b], [charge("0.1000")])
    assert [(d.grant_id, d.amount) for d in result.draws] == [
        (a.grant_id, Decimal("0.0300")),
        (b.grant_id, Decimal("0.0500")),
    ]
    assert result.drawn == Decimal("0.0800")


def test_a_row_draws_only_from_grants_active_at_its_occurred_at() -> None:
    expired = grant("5.0000", priority=1, expires_at=NOW)  # expires exactly then: not active
    future = grant("5.0000", priority=1, effective_at=NOW + timedelta(seconds=1))
    current = grant("5.0000", priority=9)
    result = burn_down([expired, future, current], [charge("0.1000")])
    assert [d.grant_id for d in result.draws] == [current.grant_id]

    late = burn_down([expired], [charge("0.1000", NOW - timedelta(seconds=1))])
    assert [d.grant_id for d in late.draws] == [expired.grant_id]


def test_nothing_left_draws_nothing() -> None:
    assert burn_down([grant("0.0000")], [charge("0.1000")]).draws == []
    assert burn_down([], [charge("0.1000")]).drawn == Decimal("0")


@pytest.mark.parametrize("text", ["0", "-1", "0.00001", "1.23456", "NaN", "Infinity", "1e20"])
def test_a_grant_amount_must_be_above_zero_with_4_places(text: str) -> None:
    with pytest.raises(ValueError, match="must"):
        check_amount(Decimal(text))


def test_a_good_amount_is_kept_with_4_places() -> None:
    assert str(check_amount(Decimal("50"))) == "50.0000"
    assert str(check_threshold(Decimal("5.5"))) == "5.5000"
    assert check_threshold(None) is None
    with pytest.raises(ValueError, match="zero or more"):
        check_threshold(Decimal("-1"))


def test_a_grant_must_start_before_it_expires_and_say_why() -> None:
    check_window(NOW, None)
    check_window(NOW, TOMORROW)
    for expires in (NOW, NOW - timedelta(seconds=1)):
        with pytest.raises(ValueError, match="after effectiveAt"):
            check_window(NOW, expires)
    for reason in ("   ", "a\x00b"):
        with pytest.raises(ValueError, match="must"):
            check_reason(reason)


def test_the_alert_is_sent_once_when_the_balance_first_falls_below() -> None:
    five = Decimal("5.0000")
    assert low_balance(Decimal("6"), five, False, mode="credit_only").send is False
    first = low_balance(Decimal("4"), five, False, mode="credit_only")
    assert first.send
    assert first.alerted
    assert low_balance(Decimal("3"), five, True, mode="credit_only").send is False
    # A grant that does not lift it to the threshold does not re-arm it.
    assert low_balance(Decimal("4.9999"), five, True, mode="credit_only", granted=True).alerted
    lifted = low_balance(Decimal("5"), five, True, mode="credit_only", granted=True)
    assert lifted == lifted.__class__(send=False, alerted=False)
    assert low_balance(Decimal("4"), five, lifted.alerted, mode="credit_only").send is True


def test_no_alert_without_a_threshold_or_in_mode_none_and_a_new_threshold_re_arms() -> None:
    assert low_balance(Decimal("0"), None, False, mode="credit_only").send is False
    assert low_balance(Decimal("0"), Decimal("5"), False, mode="none").send is False
    again = low_balance(
        Decimal("4"), Decimal("4.5"), True, mode="credit_then_invoice", new_threshold=True
    )
    assert again.send is True


def test_the_webhook_body_has_the_contracts_fields_and_a_stable_event_id() -> None:
    company = uuid.uuid4()
    body = json.loads(low_balance_body(company, 2, Decimal("4.5"), Decimal("5"), NOW))
    assert body == {
        "eventId": str(low_balance_event_id(company, 2)),
        "type": "credits.low_balance",
        "companyId": str(company),
        "balance": "4.5000",
        "threshold": "5.0000",
        "occurredAt": "2026-03-10T12:00:00Z",
    }
    assert low_balance_event_id(company, 2) != low_balance_event_id(company, 3)
