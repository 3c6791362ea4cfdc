"""Statements with credits: what credits paid of the period, what is left due, frozen at close."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from tests.integration.billing.conftest import record
from tests.support.auth import bearer
from tests.support.events import generated
from tests.support.stack import Stack

OPERATOR = bearer(uuid.uuid4(), user="ops@example.com", roles=["platform:admin"])
JANUARY = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


async def admin(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = await stack.billing.request(method, path, json=body, headers=OPERATOR)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_a_statement_shows_credits_applied_and_amount_due_and_stays_frozen(
    billing: Stack, company: UUID
) -> None:
    base = f"/api/billing/admin/companies/{company}"
    grant = await admin(
        billing,
        "POST",
        f"{base}/credits",
        {
            "amount": "0.2500",
            "kind": "promotional",
            "effectiveAt": "2026-01-01T00:00:00Z",
            "reason": "welcome",
        },
    )
    await admin(billing, "PUT", f"{base}/credit-mode", {"mode": "credit_then_invoice"})
    await record(
        billing,
        generated(company, draft="d-1", questions=10, at=JANUARY),
        generated(company, draft="d-2", questions=20, at=JANUARY),
    )  # 0.3000 billed, 0.2500 of it from credits

    statement = await billing.billing_json(company, "/api/billing/statements/2026-01")
    assert statement["total"] == "0.3000"
    assert statement["credits"] == {"applied": "0.2500"}
    assert statement["amountDue"] == "0.0500"

    await admin(billing, "POST", "/api/billing/admin/periods/2026-01/close")
    frozen = await billing.billing_json(company, "/api/billing/statements/2026-01")
    assert frozen["status"] == "closed"

    # More credits, a late January generation, a void: the closed statement does not move.
    more = await admin(
        billing,
        "POST",
        f"{base}/credits",
        {
            "amount": "1.0000",
            "kind": "purchased",
            "effectiveAt": "2026-01-01T00:00:00Z",
            "reason": "top-up",
        },
    )
    await record(billing, generated(company, draft="d-3", questions=10, at=JANUARY))
    await admin(billing, "POST", f"{base}/credits/{grant['grantId']}/void")
    after = await billing.billing_json(company, "/api/billing/statements/2026-01")
    assert after == frozen
    assert after["credits"] == {"applied": "0.2500"}
    assert after["amountDue"] == "0.0500"

    # The late generation drew from the new grant, in the period it was billed in.
    [late_period] = [row["period"] for row in await billing.usage(company) if row["late"]]
    assert late_period != "2026-01"
    late = await billing.billing_json(company, f"/api/billing/statements/{late_period}")
    assert late["late"] == {"count": 1, "cost": "0.1000"}
    assert late["credits"] == {"applied": "0.1000"}
    assert late["amountDue"] == "0.0000"
    credits = await billing.billing_json(company, "/api/billing/credits")
    assert credits["balance"] == "0.9000"
    assert {g["grantId"]: g["remaining"] for g in credits["grants"]}[more["grantId"]] == "0.9000"


async def test_a_statement_without_credits_owes_its_total(billing: Stack, company: UUID) -> None:
    await record(billing, generated(company, draft="d-1", questions=10, at=JANUARY))
    statement = await billing.billing_json(company, "/api/billing/statements/2026-01")
    assert statement["credits"] == {"applied": "0.0000"}
    assert statement["amountDue"] == statement["total"] == "0.1000"
