"""The credit guard's pure rules: which grants a request counts on, and what counts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts.events import CreditsChanged, SpendRecorded
from services.question_gen.budgets.consume import changed_company, lock_order
from services.question_gen.credits.rules import (
    CreditsExhausted,
    GrantLeft,
    counts_as_unbilled,
    drawable,
)

NOW = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
HOLD = timedelta(seconds=90)


def grant(remaining: str, *, starts: timedelta, ends: timedelta | None = None) -> GrantLeft:
    return GrantLeft(Decimal(remaining), NOW + starts, None if ends is None else NOW + ends)


def test_drawable_counts_grants_in_effect_now_and_until_the_hold_ends() -> None:
    grants = [
        grant("1.0000", starts=-timedelta(days=1)),  # never expires
        grant("2.0000", starts=timedelta(0), ends=HOLD + timedelta(seconds=1)),  # just outlasts
        grant("4.0000", starts=-timedelta(days=1), ends=HOLD),  # expires as the hold ends
        grant("8.0000", starts=timedelta(seconds=1)),  # not in effect yet
    ]
    assert drawable(grants, NOW, HOLD) == Decimal("3.0000")
    assert drawable([], NOW, HOLD) == Decimal(0)


def test_a_generation_counts_as_unbilled_in_a_credit_mode_when_it_costs_something() -> None:
    assert counts_as_unbilled("credit_only", Decimal("0.1000"))
    assert counts_as_unbilled("credit_then_invoice", Decimal("0.0001"))
    assert not counts_as_unbilled("none", Decimal("0.1000"))
    assert not counts_as_unbilled("credit_only", Decimal("0.0000"))  # billing draws nothing


def test_credits_exhausted_says_nothing_was_billed() -> None:
    exhausted = CreditsExhausted(uuid.uuid4(), Decimal("0.1000"))
    assert "0.1000" in str(exhausted)
    assert "nothing was generated or billed" in str(exhausted)


def test_a_credits_change_is_applied_after_budget_periods_and_forgets_its_company() -> None:
    company = uuid.uuid4()
    credits = CreditsChanged(
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        company_id=company,
        revision=1,
        mode="credit_only",
        balance=Decimal("1.0000"),
        low_balance_threshold=None,
        grants=[],
    )
    spend = SpendRecorded(
        event_id=uuid.uuid4(), occurred_at=NOW, company_id=company, period="2026-03", spent=1
    )
    assert lock_order(spend) < lock_order(credits)
    assert changed_company(credits) == (True, company)
    assert credits.counted_generations == []  # an older billing's event still reads
