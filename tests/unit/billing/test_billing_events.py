"""The events billing publishes for the question service: what the wire carries."""

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from contracts.events import (
    BILLING_EVENT_TYPES,
    DEFAULT_PRICE_COMPANY,
    BudgetChanged,
    CreditLeft,
    CreditsChanged,
    PriceChanged,
    SpendRecorded,
)
from contracts.topology import Topology

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_billing_events_live_under_billing_and_carry_their_version() -> None:
    assert set(BILLING_EVENT_TYPES) == {
        "billing.price_changed.v1",
        "billing.budget_changed.v1",
        "billing.spend_recorded.v1",
        "billing.credits_changed.v1",
    }
    assert Topology("p.").question_billing_bindings() == ("billing.#",)
    assert Topology("p.").question_billing_queue_name == "p.question_gen.billing"


def test_a_price_version_carries_money_as_4_place_strings() -> None:
    event = PriceChanged(
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        company_id=DEFAULT_PRICE_COMPANY,
        price_id=uuid.uuid4(),
        is_default=True,
        price_per_10_questions=Decimal("0.1"),
        profit_margin_percent=Decimal("20"),
        effective_from=NOW,
    )
    wire = json.loads(event.to_json())
    assert wire["companyId"] == "00000000-0000-0000-0000-000000000000"
    assert wire["pricePer10Questions"] == "0.1000"
    assert wire["profitMarginPercent"] == "20.0000"
    assert wire["isDefault"] is True
    assert PriceChanged.model_validate_json(event.to_json()) == event


def test_a_budget_without_a_limit_says_null() -> None:
    event = BudgetChanged(
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        company_id=uuid.uuid4(),
        revision=3,
        monthly_limit=None,
        thresholds=[50, 100],
    )
    wire = json.loads(event.to_json())
    assert wire["monthlyLimit"] is None
    assert wire["revision"] == 3


@pytest.mark.parametrize(
    ("field", "value"), [("spent", "-1"), ("spent", "0.00001"), ("period", "2026-13")]
)
def test_spend_events_refuse_what_cannot_be_spend(field: str, value: str) -> None:
    fields = {"period": "2026-03", "spent": "1.0000", field: value}
    with pytest.raises(ValidationError):
        SpendRecorded(event_id=uuid.uuid4(), occurred_at=NOW, company_id=uuid.uuid4(), **fields)


def test_credits_changed_carries_the_whole_account_with_money_as_strings() -> None:
    grant_id = uuid.uuid4()
    event = CreditsChanged(
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        company_id=uuid.uuid4(),
        revision=3,
        mode="credit_only",
        balance=Decimal("1"),
        low_balance_threshold=None,
        grants=[
            CreditLeft(
                grant_id=grant_id,
                remaining=Decimal("1"),
                priority=1,
                effective_at=NOW,
                expires_at=None,
            )
        ],
    )
    wire = json.loads(event.to_json())
    assert wire["balance"] == "1.0000"
    assert wire["mode"] == "credit_only"
    assert wire["lowBalanceThreshold"] is None
    assert wire["grants"] == [
        {
            "grantId": str(grant_id),
            "remaining": "1.0000",
            "priority": 1,
            "effectiveAt": "2026-03-01T00:00:00Z",
            "expiresAt": None,
        }
    ]
    assert CreditsChanged.model_validate_json(event.to_json()) == event
    with pytest.raises(ValidationError):
        CreditsChanged.model_validate({**wire, "mode": "prepaid"})
    with pytest.raises(ValidationError):
        CreditsChanged.model_validate({**wire, "balance": "-1.0000"})
