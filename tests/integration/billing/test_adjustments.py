"""Adjustments and the statements' bad input: a clear 4xx, and nothing written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from services.billing.statements.rules import Period
from tests.integration.billing.conftest import record
from tests.support.auth import bearer
from tests.support.events import generated, job_created
from tests.support.stack import Stack

OPERATOR = bearer(uuid.uuid4(), user="ops@example.com", roles=["platform:admin"])
NOT_OPERATOR = bearer(uuid.uuid4(), user="finance@example.com", roles=["billing:admin"])


async def written(stack: Stack) -> dict[str, int]:
    rows = await stack.fetch(
        stack.dbs.billing,
        "SELECT (SELECT count(*) FROM adjustments) AS adjustments,"
        " (SELECT count(*) FROM closed_periods) AS closed,"
        " (SELECT count(*) FROM statements) AS statements,"
        " (SELECT count(*) FROM idempotency_keys) AS keys",
    )
    return dict(rows[0])


NOTHING = {"adjustments": 0, "closed": 0, "statements": 0, "keys": 0}


def adjust(stack: Stack, company: UUID, body: dict[str, Any], **headers: str) -> Any:
    return stack.billing.post(
        f"/api/billing/admin/companies/{company}/adjustments",
        json=body,
        headers={**OPERATOR, **headers},
    )


async def test_an_adjustment_lands_in_the_open_period_and_leaves_usage_alone(
    billing: Stack, company: UUID
) -> None:
    job = job_created(company)
    usage = generated(company, job_id=job.job_id)
    await record(billing, job)
    await record(billing, usage)
    before = await billing.usage(company)

    credit = {
        "amount": "-0.1000",
        "reason": "duplicate run",
        "usageId": str(before[0]["id"]),
        "jobId": str(job.job_id),
    }

    response = await adjust(billing, company, credit, **{"Idempotency-Key": "credit-1"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["amount"] == "-0.1000"
    assert body["createdBy"] == "ops@example.com"
    assert body["period"] == str(Period.of(datetime.now(UTC)))
    assert body["usageId"] == str(before[0]["id"])

    replay = await adjust(billing, company, credit, **{"Idempotency-Key": "credit-1"})
    assert replay.status_code == 201
    assert replay.json() == body
    reused = await adjust(
        billing,
        company,
        {"amount": "-0.2000", "reason": "other"},
        **{"Idempotency-Key": "credit-1"},
    )
    assert reused.status_code == 422

    listed = await billing.billing.get("/api/billing/adjustments", headers=bearer(company))
    assert listed.json() == {"currency": "USD", "adjustments": [body]}
    assert await billing.usage(company) == before
    assert (await written(billing))["adjustments"] == 1
    statement = await billing.billing.get(
        f"/api/billing/statements/{body['period']}", headers=bearer(company)
    )
    assert statement.json()["total"] == "0.0000"  # 0.1000 of usage, -0.1000 of adjustment


async def test_another_companys_usage_or_job_is_not_found(billing: Stack, company: UUID) -> None:
    other = uuid.uuid4()
    job = job_created(other)
    await record(billing, job)
    await record(billing, generated(other, job_id=job.job_id))
    usage_id = (await billing.usage(other))[0]["id"]

    for field, value in (("usageId", usage_id), ("jobId", job.job_id), ("jobId", uuid.uuid4())):
        response = await adjust(billing, company, {"amount": "1", "reason": "x", field: str(value)})
        assert response.status_code == 404, response.text
        assert field in response.json()["detail"]
    assert await written(billing) == NOTHING


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "0", "reason": "nothing"}, "amount"),
        ({"amount": "0.0000", "reason": "nothing"}, "amount"),
        ({"amount": "0.00001", "reason": "five places"}, "amount"),
        ({"amount": "-1.23456", "reason": "five places"}, "amount"),
        ({"amount": "ten", "reason": "not a number"}, "amount"),
        ({"reason": "no amount"}, "amount"),
        ({"amount": "1.0000", "reason": ""}, "reason"),
        ({"amount": "1.0000", "reason": "x" * 501}, "reason"),
        ({"amount": "1.0000", "reason": "   "}, "reason"),
        ({"amount": "1.0000", "reason": "ok", "usageId": "not-a-uuid"}, "usageId"),
    ],
)
async def test_a_bad_adjustment_is_refused_naming_its_field(
    billing: Stack, company: UUID, body: dict[str, Any], field: str
) -> None:
    response = await adjust(billing, company, body, **{"Idempotency-Key": "k"})
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]
    assert await written(billing) == NOTHING


async def test_a_reason_of_500_characters_is_taken(billing: Stack, company: UUID) -> None:
    response = await adjust(billing, company, {"amount": "0.0001", "reason": "x" * 500})
    assert response.status_code == 201, response.text


async def test_operators_only(billing: Stack, company: UUID) -> None:
    month = Period.of(datetime.now(UTC)).previous()
    for headers in (NOT_OPERATOR, bearer(company)):
        response = await billing.billing.post(
            f"/api/billing/admin/companies/{company}/adjustments",
            json={"amount": "1.0000", "reason": "x"},
            headers=headers,
        )
        assert response.status_code == 403, response.text
        response = await billing.billing.post(
            f"/api/billing/admin/periods/{month}/close", headers=headers
        )
        assert response.status_code == 403
    assert (
        await billing.billing.post(f"/api/billing/admin/periods/{month}/close")
    ).status_code == 401
    assert await written(billing) == NOTHING


@pytest.mark.parametrize("period", ["2026-13", "26-11", "2026-1", "2026-00", "nov"])
async def test_a_malformed_period_is_refused(billing: Stack, company: UUID, period: str) -> None:
    for response in (
        await billing.billing.get(f"/api/billing/statements/{period}", headers=bearer(company)),
        await billing.billing.post(f"/api/billing/admin/periods/{period}/close", headers=OPERATOR),
        await billing.billing.get(
            "/api/billing/adjustments", params={"period": period}, headers=bearer(company)
        ),
    ):
        assert response.status_code == 422, response.text
        assert [error["field"] for error in response.json()["errors"]] == ["period"]
    assert await written(billing) == NOTHING


async def test_a_period_not_yet_ended_cannot_be_closed(billing: Stack) -> None:
    current = Period.of(datetime.now(UTC))
    for period in (current, current.next()):
        response = await billing.billing.post(
            f"/api/billing/admin/periods/{period}/close", headers=OPERATOR
        )
        assert response.status_code == 409, response.text
    assert await written(billing) == NOTHING
    # The clock is the app's: at the first instant of the next month, the month has ended.
    billing.apps["billing"].state.clock = lambda: current.end
    response = await billing.billing.post(
        f"/api/billing/admin/periods/{current}/close", headers=OPERATOR
    )
    assert response.status_code == 200
    assert (await written(billing))["closed"] == 1


async def test_a_malformed_company_id_is_named_as_the_contract_names_it(
    billing: Stack,
) -> None:
    response = await billing.billing.post(
        "/api/billing/admin/companies/not-a-uuid/adjustments",
        json={"amount": "1.0000", "reason": "x"},
        headers=OPERATOR,
    )
    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["companyId"]
    assert await written(billing) == NOTHING
