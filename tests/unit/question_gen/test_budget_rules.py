"""The budget guard's pure rules: the price in force, worst case and actual cost."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from contracts.events import BudgetChanged, PriceChanged, SpendRecorded
from services.question_gen.budgets.consume import NotABillingEvent, lock_order, parse
from services.question_gen.budgets.rules import (
    PriceVersion,
    Terms,
    cost_at,
    period_spent,
    price_at,
)

COMPANY = uuid.uuid4()
OTHER = uuid.uuid4()
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def version(
    company: uuid.UUID | None,
    price: str,
    margin: str = "0",
    *,
    start: datetime = T0,
    announced: datetime = T0,
) -> PriceVersion:
    return PriceVersion(uuid.uuid4(), company, Decimal(price), Decimal(margin), start, announced)


def test_no_price_known_costs_the_contracts_default() -> None:
    assert cost_at(Terms(limited=True), COMPANY, T0, 10) == Decimal("0.1000")


def test_the_default_applies_until_the_company_has_its_own() -> None:
    default = version(None, "0.10")
    own = version(COMPANY, "0.20", start=T0 + timedelta(days=1))
    terms = Terms(True, (default, own))
    assert price_at(terms, COMPANY, T0 + timedelta(hours=1)) == default
    assert price_at(terms, COMPANY, T0 + timedelta(days=1)) == own
    assert price_at(terms, OTHER, T0 + timedelta(days=2)) == default


def test_a_version_not_yet_in_force_is_not_used() -> None:
    later = version(COMPANY, "0.50", start=T0 + timedelta(seconds=5))
    terms = Terms(True, (version(None, "0.10"), later))
    assert cost_at(terms, COMPANY, T0 + timedelta(seconds=4), 10) == Decimal("0.1000")
    assert cost_at(terms, COMPANY, T0 + timedelta(seconds=5), 10) == Decimal("0.5000")


def test_of_two_versions_with_one_start_the_later_announced_wins() -> None:
    first = version(COMPANY, "0.30", announced=T0)
    second = version(COMPANY, "0.40", announced=T0 + timedelta(seconds=1))
    assert price_at(Terms(True, (second, first)), COMPANY, T0) == second


def test_cost_includes_the_margin_rounded_half_up_to_four_places() -> None:
    terms = Terms(True, (version(COMPANY, "0.1234", "12.5"),))
    # 3 / 10 * 0.1234 = 0.03702; * 1.125 = 0.0416475 -> 0.0416
    assert cost_at(terms, COMPANY, T0, 3) == Decimal("0.0416")
    terms = Terms(True, (version(COMPANY, "0.0005"),))
    assert cost_at(terms, COMPANY, T0, 1) == Decimal("0.0001")  # 0.00005 half-up


def test_billing_events_are_parsed_by_routing_key() -> None:
    event = BudgetChanged(
        event_id=uuid.uuid4(),
        occurred_at=T0,
        company_id=COMPANY,
        revision=3,
        monthly_limit=Decimal("1.0000"),
        thresholds=[50],
    )
    assert parse(BudgetChanged.routing_key, event.to_json()) == event


@pytest.mark.parametrize(
    ("routing_key", "body"),
    [
        ("billing.unknown.v1", b"{}"),
        (None, b"{}"),
        (BudgetChanged.routing_key, b"not json"),
        (BudgetChanged.routing_key, b'{"revision": 0}'),
    ],
)
def test_anything_else_is_not_a_billing_event(routing_key: str | None, body: bytes) -> None:
    with pytest.raises(NotABillingEvent):
        parse(routing_key, body)


def test_spend_is_applied_in_one_order_after_terms() -> None:
    def spend(company: uuid.UUID, period: str) -> SpendRecorded:
        return SpendRecorded(
            event_id=uuid.uuid4(),
            occurred_at=T0,
            company_id=company,
            period=period,
            spent=Decimal("1"),
        )

    price = PriceChanged(
        event_id=uuid.uuid4(),
        occurred_at=T0,
        company_id=COMPANY,
        price_id=uuid.uuid4(),
        price_per_10_questions=Decimal("0.1"),
        profit_margin_percent=Decimal("0"),
        effective_from=T0,
    )
    a, b = sorted([COMPANY, OTHER], key=str)
    events = [spend(b, "2026-11"), spend(a, "2026-12"), price, spend(a, "2026-11")]
    ordered = sorted(events, key=lock_order)
    assert ordered[0] is price
    assert [(e.company_id, e.period) for e in ordered[1:]] == [  # type: ignore[attr-defined]
        (a, "2026-11"),
        (a, "2026-12"),
        (b, "2026-11"),
    ]


@pytest.mark.parametrize(
    ("settled", "unfolded", "billed", "spent"),
    [
        ("0.9000", "0", "0", "0.9000"),  # spent before any limit; billing silent
        ("0.5000", "0.4000", "0.9000", "0.9000"),  # billing caught up: the same total
        ("0.9000", "0.1000", "0.9000", "1.0000"),  # billing lags: our count wins
        ("0", "0.1000", "0.9000", "0.9000"),  # billing knows more (recorded before us)
    ],
)
def test_spent_is_our_own_count_with_billing_as_a_floor(
    settled: str, unfolded: str, billed: str, spent: str
) -> None:
    assert period_spent(Decimal(settled), Decimal(unfolded), Decimal(billed)) == Decimal(spent)
