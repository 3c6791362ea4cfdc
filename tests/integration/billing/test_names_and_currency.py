"""Names a person reads: job titles wherever billing lists jobs, the currency of every amount."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from tests.integration.billing.conftest import record
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.events import generated, job_created
from tests.support.stack import Stack, start_billing
from tests.support.waiting import eventually

MAY = datetime(2025, 5, 1, tzinfo=UTC)
RANGE = {"from": "2025-05-01T00:00:00Z", "to": "2025-06-01T00:00:00Z"}
TITLE = 'Backend <b>engineer</b>, "Lisbon"'
OPERATOR = bearer(uuid.uuid4(), roles=["platform:admin"], user="ops@example.com")


@pytest.fixture
async def euro_billing(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_billing(dbs, prefix, billing_currency="EUR") as running:
        yield running


async def test_every_read_that_lists_jobs_names_them(billing: Stack, company: UUID) -> None:
    titled = job_created(company, title=TITLE, at=MAY)
    untitled = job_created(company, at=MAY)  # as a JobCreated sent before events had titles
    await record(billing, titled, untitled, job_created(uuid.uuid4(), job_id=uuid.uuid4()))
    await record(
        billing,
        generated(company, job_id=titled.job_id, questions=20, at=MAY + timedelta(days=2)),
        generated(company, job_id=untitled.job_id, questions=10, at=MAY + timedelta(days=3)),
        generated(company, draft="still-a-draft", questions=5, at=MAY + timedelta(days=4)),
    )

    summary = await billing.billing_json(company, "/api/billing/summary", **RANGE)
    assert [(job["jobId"], job["jobTitle"]) for job in summary["jobs"]] == [
        (str(titled.job_id), TITLE),
        (str(untitled.job_id), None),
    ]
    statement = await billing.billing_json(company, "/api/billing/statements/2025-05")
    assert [(line["jobId"], line["jobTitle"]) for line in statement["lines"]] == [
        (str(titled.job_id), TITLE),
        (str(untitled.job_id), None),
    ]
    usage = await billing.billing_json(company, "/api/billing/usage", **RANGE)
    assert [(row["jobId"], row["jobTitle"]) for row in usage["items"]] == [
        (None, None),
        (str(untitled.job_id), None),
        (str(titled.job_id), TITLE),
    ]
    one = await billing.billing_json(company, f"/api/billing/usage/{usage['items'][2]['id']}")
    assert one["jobTitle"] == TITLE
    exported = await billing.billing.get(
        "/api/billing/usage.csv", params=RANGE, headers=bearer(company)
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [row["jobTitle"] for row in rows] == [TITLE, "", ""]
    assert list(rows[0])[3:5] == ["jobId", "jobTitle"]

    # The untitled job is named by a later event: every read shows it from then on, the
    # closed statement included (its figures are frozen; a name is not a figure).
    await billing.billing.post("/api/billing/admin/periods/2025-05/close", headers=OPERATOR)
    await record(billing, job_created(company, job_id=untitled.job_id, title="Data analyst"))

    async def named() -> bool:
        again = await billing.billing_json(company, "/api/billing/summary", **RANGE)
        return bool(again["jobs"][1]["jobTitle"] == "Data analyst")

    await eventually(named, timeout=30)
    closed = await billing.billing_json(company, "/api/billing/statements/2025-05")
    assert closed["status"] == "closed"
    assert [line["jobTitle"] for line in closed["lines"]] == [TITLE, "Data analyst"]
    assert closed["totals"] == statement["totals"]

    # Another company never sees these titles, even naming the same job ids.
    stranger = uuid.uuid4()
    await record(billing, generated(stranger, job_id=titled.job_id, at=MAY + timedelta(days=5)))
    theirs = await billing.billing_json(stranger, "/api/billing/usage", **RANGE)
    assert [row["jobTitle"] for row in theirs["items"]] == [None]


def currencies(body: Any) -> set[str]:
    """Every `currency` anywhere in an answer."""
    found: set[str] = set()
    if isinstance(body, dict):
        for name, value in body.items():
            if name == "currency":
                found.add(value)
            found |= currencies(value)
    elif isinstance(body, list):
        for item in body:
            found |= currencies(item)
    return found


async def test_every_answer_with_money_says_its_currency(
    euro_billing: Stack, company: UUID
) -> None:
    stack = euro_billing
    job = job_created(company, title="Recruiter", at=MAY)
    await record(stack, job)
    await record(
        stack,
        generated(company, job_id=job.job_id, questions=10, at=MAY + timedelta(days=1)),
        generated(company, draft="d", questions=10, at=MAY + timedelta(days=1)),
    )
    admin = bearer(company, roles=["billing:admin"])
    answers: dict[str, Any] = {}

    async def answer(name: str, method: str, path: str, **kwargs: Any) -> None:
        response = await stack.billing.request(method, path, **kwargs)
        assert response.status_code in (200, 201), f"{path}: {response.text}"
        answers[name] = response.json()

    user: dict[str, Any] = {"headers": bearer(company)}
    await answer(
        "set budget",
        "PUT",
        "/api/billing/budget",
        json={"monthlyLimit": "5.0000", "thresholds": [50], "webhookUrl": None},
        headers=admin,
    )
    await answer("budget", "GET", "/api/billing/budget", **user)
    await answer(
        "set price",
        "PUT",
        f"/api/billing/admin/companies/{company}/price",
        json={
            "pricePer10Questions": "0.2000",
            "profitMarginPercent": "0",
            "effectiveFrom": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        },
        headers=OPERATOR,
    )
    await answer("price", "GET", "/api/billing/price", **user)
    await answer("usage", "GET", "/api/billing/usage", params=RANGE, **user)
    usage_id = answers["usage"]["items"][0]["id"]
    await answer("usage row", "GET", f"/api/billing/usage/{usage_id}", **user)
    await answer("summary", "GET", "/api/billing/summary", params=RANGE, **user)
    await answer("drafts", "GET", "/api/billing/drafts", **user)
    await answer(
        "daily",
        "GET",
        "/api/billing/usage/daily",
        params={"from": "2025-05-01", "to": "2025-05-31"},
        **user,
    )
    await answer(
        "adjust",
        "POST",
        f"/api/billing/admin/companies/{company}/adjustments",
        json={"amount": "-0.0100", "reason": "goodwill"},
        headers=OPERATOR,
    )
    await answer("adjustments", "GET", "/api/billing/adjustments", **user)
    await answer("statement", "GET", "/api/billing/statements/2025-05", **user)

    for name, body in answers.items():
        assert body["currency"] == "EUR", name
        assert currencies(body) == {"EUR"}, name
    exported = await stack.billing.get(
        "/api/billing/usage.csv", params=RANGE, headers=bearer(company)
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [row["currency"] for row in rows] == ["EUR", "EUR"]
    assert list(rows[0])[10:12] == ["cost", "currency"]
