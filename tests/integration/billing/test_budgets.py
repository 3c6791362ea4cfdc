"""Budgets: a company's billing admin sets its limit, thresholds and webhook; spend is billed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest

from contracts.periods import period_of
from tests.integration.billing.conftest import record
from tests.integration.billing.webhook_receiver import Receiver
from tests.support.auth import bearer
from tests.support.broker import drain
from tests.support.events import generated
from tests.support.stack import Stack


def admin(company: UUID) -> dict[str, str]:
    return bearer(company, user="finance@example.com", roles=["billing:admin"])


def budget(
    limit: str | None = "100", thresholds: list[Any] | None = None, url: str | None = None
) -> dict[str, Any]:
    return {
        "monthlyLimit": limit,
        "thresholds": [50, 80, 100] if thresholds is None else thresholds,
        "webhookUrl": url,
    }


async def put(stack: Stack, company: UUID, body: dict[str, Any]) -> httpx.Response:
    return await stack.billing.put("/api/billing/budget", json=body, headers=admin(company))


async def get(stack: Stack, company: UUID) -> dict[str, Any]:
    response = await stack.billing.get("/api/billing/budget", headers=bearer(company))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def events_ever(stack: Stack) -> int:
    [row] = await stack.fetch(
        stack.dbs.billing, "SELECT COALESCE(pg_sequence_last_value('outbox_id_seq'), 0) AS n"
    )
    return int(row["n"])


async def billing_events(stack: Stack, routing_key: str, count: int) -> list[dict[str, Any]]:
    """Wait for `count` events of `routing_key` on the question service's queue."""
    seen: list[dict[str, Any]] = []
    for _ in range(150):
        messages = await drain(stack.topology.question_billing_queue_name)
        seen += [json.loads(m.body) for m in messages if m.routing_key == routing_key]
        if len(seen) >= count:
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(seen)} of {count} {routing_key} events published")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    listening = Receiver()
    await listening.start()
    yield listening
    await listening.stop()


async def test_no_budget_means_no_limit(billing: Stack, company: UUID) -> None:
    assert await get(billing, company) == {
        "currency": "USD",
        "monthlyLimit": None,
        "thresholds": [],
        "webhookUrl": None,
        "period": period_of(datetime.now(UTC)),
        "spent": "0.0000",
        "remaining": None,
    }


async def test_a_budget_is_set_read_and_published(billing: Stack, company: UUID) -> None:
    response = await put(billing, company, budget("100", [100, 50, 80, 50]))
    assert response.status_code == 200, response.text
    expected = {
        "currency": "USD",
        "monthlyLimit": "100.0000",
        "thresholds": [50, 80, 100],
        "webhookUrl": None,
        "period": period_of(datetime.now(UTC)),
        "spent": "0.0000",
        "remaining": "100.0000",
    }
    assert response.json() == expected
    assert await get(billing, company) == expected
    assert (await put(billing, company, budget(None, []))).status_code == 200

    changes = await billing_events(billing, "billing.budget_changed.v1", 2)
    latest = max(changes, key=lambda event: event["revision"])
    assert [event["revision"] for event in changes] in ([1, 2], [2, 1])
    assert latest["companyId"] == str(company)
    assert latest["monthlyLimit"] is None
    assert latest["thresholds"] == []
    first = min(changes, key=lambda event: event["revision"])
    assert first["monthlyLimit"] == "100.0000"
    assert first["thresholds"] == [50, 80, 100]


async def test_spent_is_what_billing_billed_in_the_period_and_is_published(
    billing: Stack, company: UUID
) -> None:
    await put(billing, company, budget("1"))
    now = datetime.now(UTC)
    last_month = (now.replace(day=1) - timedelta(days=1)).replace(hour=12)
    await record(
        billing,
        generated(company, at=now, questions=10),
        generated(company, at=now, questions=20),
        generated(company, at=last_month, questions=10),
    )
    standing = await get(billing, company)
    assert standing["spent"] == "0.3000"
    assert standing["remaining"] == "0.7000"

    spends = await billing_events(billing, "billing.spend_recorded.v1", 2)
    latest: dict[str, Decimal] = {}
    for event in spends:  # keep the highest per period, whatever the order
        spent = Decimal(event["spent"])
        latest[event["period"]] = max(latest.get(event["period"], spent), spent)
    assert latest == {period_of(now): Decimal("0.3"), period_of(last_month): Decimal("0.1")}


async def test_the_period_a_budget_stands_in_is_the_apps_clocks(
    billing: Stack, company: UUID
) -> None:
    """The budget's period is read from the clock the app is given, as statements and
    reads are: a test (or a replay) can pin the date instead of depending on today's."""
    await put(billing, company, budget("1"))
    await record(
        billing,
        generated(company, at=datetime(2025, 1, 31, 23, 59, tzinfo=UTC), questions=20),
        generated(company, at=datetime(2025, 2, 1, tzinfo=UTC), questions=10),
    )
    for pinned, period, spent in (
        (datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC), "2025-01", "0.2000"),
        (datetime(2025, 2, 1, 0, 30, tzinfo=UTC), "2025-02", "0.1000"),
        (datetime(2025, 3, 1, tzinfo=UTC), "2025-03", "0.0000"),
    ):
        billing.apps["billing"].state.clock = lambda pinned=pinned: pinned
        standing = await get(billing, company)
        assert (standing["period"], standing["spent"]) == (period, spent), pinned
        response = await put(billing, company, budget("1"))
        assert response.json()["period"] == period


async def test_the_webhook_secret_is_shown_once_when_a_url_is_first_set(
    billing: Stack, company: UUID
) -> None:
    url = "https://93.184.216.34/hooks"  # public: accepted, and never called by this test
    first = (await put(billing, company, budget(url=url))).json()
    assert first["webhookSecret"].startswith("whsec_")
    again = (await put(billing, company, budget("200", url=url))).json()
    assert "webhookSecret" not in again
    assert "webhookSecret" not in await get(billing, company)
    assert "webhookSecret" not in (await put(billing, company, budget())).json()
    renewed = (await put(billing, company, budget(url=url))).json()
    assert renewed["webhookSecret"] != first["webhookSecret"]


async def test_setting_a_budget_needs_billing_admin(billing: Stack, company: UUID) -> None:
    before = await get(billing, company)
    for headers in (bearer(company), bearer(company, roles=["platform:admin"])):
        response = await billing.billing.put("/api/billing/budget", json=budget(), headers=headers)
        assert response.status_code == 403, response.text
        assert "billing:admin" in response.json()["detail"]
    assert await get(billing, company) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (budget("-1"), "monthlyLimit"),
        (budget("lots"), "monthlyLimit"),
        (budget("1.00001"), "monthlyLimit"),
        (budget("Infinity"), "monthlyLimit"),
        (budget(thresholds=[0]), "thresholds"),
        (budget(thresholds=[101]), "thresholds"),
        (budget(thresholds=[50, -5]), "thresholds"),
        (budget(thresholds=["50"]), "thresholds"),
        (budget(thresholds=[True]), "thresholds"),
        (budget(url="http://169.254.169.254/"), "webhookUrl"),
        (budget(url="http://169.254.169.254/latest/meta-data/"), "webhookUrl"),
        (budget(url="http://10.0.0.1/"), "webhookUrl"),
        (budget(url="http://localhost/"), "webhookUrl"),
        (budget(url="http://[::1]/"), "webhookUrl"),
        (budget(url="file:///etc/passwd"), "webhookUrl"),
        (budget(url="ftp://93.184.216.34/"), "webhookUrl"),
        ({"monthlyLimit": "1", "thresholds": []}, "webhookUrl"),
    ],
)
async def test_a_bad_budget_is_422_naming_the_field_and_changes_nothing(
    billing: Stack, company: UUID, body: dict[str, Any], field: str
) -> None:
    assert (await put(billing, company, budget("5", [10]))).status_code == 200
    before, events = await get(billing, company), await events_ever(billing)

    response = await put(billing, company, body)

    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["errors"]}
    assert await get(billing, company) == before
    assert await events_ever(billing) == events


async def test_a_webhook_url_pointing_inside_gets_no_traffic(
    billing: Stack, company: UUID, receiver: Receiver
) -> None:
    """A receiver listens on loopback: URLs naming it (by name or address) are refused unseen."""
    for url in (
        f"http://localhost:{receiver.port}/hooks",
        f"http://127.0.0.1:{receiver.port}/hooks",
        f"http://[::ffff:127.0.0.1]:{receiver.port}/hooks",
        f"http://2130706433:{receiver.port}/hooks",
    ):
        response = await put(billing, company, budget(url=url))
        assert response.status_code == 422, (url, response.text)
        assert response.json()["errors"][0]["field"] == "webhookUrl"
    await record(billing, *(generated(company) for _ in range(3)))
    assert receiver.received == []
    assert (await get(billing, company))["webhookUrl"] is None
