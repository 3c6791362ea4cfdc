"""The low-balance webhook: signed and retried like budget webhooks; once per fall below."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest

from services.billing.credits.rules import low_balance_event_id
from services.billing.webhooks.rules import verify
from tests.integration.billing.conftest import record
from tests.integration.billing.webhook_receiver import Receiver
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.events import generated
from tests.support.stack import Stack, start_billing
from tests.support.waiting import eventually

OPERATOR = bearer(uuid.uuid4(), user="ops@example.com", roles=["platform:admin"])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    listening = Receiver(fail_first=1)
    await listening.start()
    yield listening
    await listening.stop()


@pytest.fixture
async def billing_with_webhooks(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_billing(
        dbs,
        prefix,
        webhook_allowed_hosts="127.0.0.1",
        webhook_first_retry_seconds=0.2,
        webhook_poll_seconds=0.05,
    ) as running:
        yield running


async def operator(stack: Stack, method: str, path: str, body: dict[str, Any]) -> Any:
    response = await stack.billing.request(method, path, json=body, headers=OPERATOR)
    assert response.status_code in (200, 201), response.text
    return response.json()


def grant(amount: str) -> dict[str, Any]:
    return {"amount": amount, "kind": "purchased", "reason": "top-up"}


async def test_the_alert_goes_once_per_fall_below_and_again_after_a_grant_lifts_it(
    billing_with_webhooks: Stack, company: UUID, receiver: Receiver
) -> None:
    stack = billing_with_webhooks
    budget = await stack.billing.put(
        "/api/billing/budget",
        json={"monthlyLimit": None, "thresholds": [], "webhookUrl": receiver.url},
        headers=bearer(company, roles=["billing:admin"]),
    )
    secret = budget.json()["webhookSecret"]
    base = f"/api/billing/admin/companies/{company}"
    await operator(stack, "POST", f"{base}/credits", grant("0.5000"))
    mode = {"mode": "credit_only", "lowBalanceThreshold": "0.3000"}
    await operator(stack, "PUT", f"{base}/credit-mode", mode)

    await record(stack, generated(company))  # 0.4000: above
    await record(stack, generated(company), generated(company))  # 0.2000: below, alert 1
    await record(stack, generated(company))  # 0.1000: still below, nothing
    await operator(stack, "POST", f"{base}/credits", grant("0.1000"))  # 0.2000: not lifted
    await operator(stack, "POST", f"{base}/credits", grant("1.0000"))  # 1.2000: re-armed
    await record(stack, *(generated(company) for _ in range(10)))  # 0.2000: alert 2

    def both(got: list[Any]) -> bool:
        return len({r.json["eventId"] for r in got[receiver.fail_first :]}) == 2

    async def received() -> list[Any]:
        return list(receiver.received)

    await eventually(received, until=both, timeout=30)
    bodies = {r.json["eventId"]: r.json for r in receiver.received}
    assert set(bodies) == {str(low_balance_event_id(company, n)) for n in (1, 2)}
    for body in bodies.values():
        assert body["type"] == "credits.low_balance"
        assert body["companyId"] == str(company)
        assert body["threshold"] == "0.3000"
        assert body["balance"] == "0.2000"
        assert body["occurredAt"].endswith("Z")
    for request in receiver.received:
        assert verify(secret, request.headers["billing-signature"], request.body)
    assert len(receiver.received) == 3  # one retried after the receiver failed, the other once
    rows = await stack.fetch(
        stack.dbs.billing,
        "SELECT low_balance_alerts, low_balance_alerted FROM credit_accounts WHERE company_id = $1",
        company,
    )
    assert dict(rows[0]) == {"low_balance_alerts": 2, "low_balance_alerted": True}
    # The deliveries list names them as what they are, not as budget thresholds.
    listed = await stack.billing_json(company, "/api/billing/webhooks/deliveries")
    attempts = listed["deliveries"]
    assert len(attempts) == 3
    assert {a["eventId"] for a in attempts} == set(bodies)
    for attempt in attempts:
        assert (attempt["type"], attempt["period"], attempt["threshold"]) == (
            "credits.low_balance",
            None,
            None,
        )
    assert sorted(a["outcome"] for a in attempts) == ["delivered", "delivered", "failed"]


async def test_no_alert_in_mode_none_or_without_a_webhook(
    billing_with_webhooks: Stack, company: UUID
) -> None:
    stack = billing_with_webhooks
    base = f"/api/billing/admin/companies/{company}"
    await operator(stack, "POST", f"{base}/credits", grant("0.1000"))
    await operator(
        stack, "PUT", f"{base}/credit-mode", {"mode": "credit_only", "lowBalanceThreshold": "1"}
    )
    await record(stack, generated(company))  # below, but there is no URL to send to

    other = uuid.uuid4()
    await operator(stack, "POST", f"/api/billing/admin/companies/{other}/credits", grant("0.1000"))
    await operator(
        stack,
        "PUT",
        f"/api/billing/admin/companies/{other}/credit-mode",
        {"mode": "none", "lowBalanceThreshold": "1"},
    )
    await record(stack, generated(other))

    rows = await stack.fetch(stack.dbs.billing, "SELECT count(*) AS n FROM webhook_deliveries")
    assert rows[0]["n"] == 0
