"""Monthly statements through billing's real worker and API: close, frozen copy, late usage."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from services.billing.statements.rules import Period
from tests.integration.billing.conftest import record
from tests.support.auth import bearer
from tests.support.events import generated, job_created
from tests.support.paging import every_page
from tests.support.stack import Stack

OPERATOR = bearer(uuid.uuid4(), user="ops@example.com", roles=["platform:admin"])


def last_month() -> Period:
    """A month that has ended, whose next month is the current one (where late usage goes)."""
    return Period.of(datetime.now(UTC)).previous()


async def statement(stack: Stack, company: UUID, period: Period, **params: Any) -> dict[str, Any]:
    response = await stack.billing.get(
        f"/api/billing/statements/{period}", params=params, headers=bearer(company)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def close(stack: Stack, period: Period) -> dict[str, Any]:
    response = await stack.billing.post(
        f"/api/billing/admin/periods/{period}/close", headers=OPERATOR
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_closed_statement_never_changes_and_late_usage_goes_to_the_next(
    billing: Stack, company: UUID
) -> None:
    month = last_month()
    day = month.start + timedelta(days=10)
    other = uuid.uuid4()
    first = job_created(company, at=day)
    await record(billing, first)
    await record(
        billing,
        generated(company, job_id=first.job_id, questions=10, at=day + timedelta(hours=1)),
        generated(company, draft="saved-later", questions=20, at=day + timedelta(hours=2)),
        generated(company, draft="still-waiting", questions=5, at=day + timedelta(hours=3)),
        generated(other, questions=7, at=day + timedelta(hours=4)),
    )
    second = job_created(company, draft="saved-later", at=day + timedelta(hours=5))
    await record(billing, second)
    # An adjustment posted during the month lands in it.
    billing.apps["billing"].state.clock = lambda: day + timedelta(days=1)
    credit = await billing.billing.post(
        f"/api/billing/admin/companies/{company}/adjustments",
        json={"amount": "-0.0500", "reason": "goodwill: a slow answer"},
        headers=OPERATOR,
    )
    assert credit.status_code == 201, credit.text
    assert credit.json()["period"] == str(month)
    del billing.apps["billing"].state.clock

    first_close = await close(billing, month)
    frozen = await billing.billing.get(f"/api/billing/statements/{month}", headers=bearer(company))
    assert frozen.status_code == 200
    body = frozen.json()
    assert body["status"] == "closed"
    assert body["closedAt"] == first_close["closedAt"]
    assert body["totals"] == {"questionCount": 35, "cost": "0.3500"}
    assert body["lines"] == [
        {"jobId": str(second.job_id), "jobTitle": None, "questionCount": 20, "cost": "0.2000"},
        {"jobId": str(first.job_id), "jobTitle": None, "questionCount": 10, "cost": "0.1000"},
    ]
    assert body["nextCursor"] is None
    assert body["drafts"] == {"count": 1, "questionCount": 5, "cost": "0.0500"}
    assert body["late"] == {"count": 0, "cost": "0.0000"}
    assert [(item["amount"], item["createdBy"]) for item in body["adjustments"]] == [
        ("-0.0500", "ops@example.com")
    ]
    assert body["total"] == "0.3000"

    # After the close: a generation of the closed month arrives, a draft of it is saved.
    late = generated(company, job_id=first.job_id, questions=30, at=day + timedelta(hours=6))
    await record(billing, late, job_created(company, draft="still-waiting"))
    assert (await close(billing, month))["closedAt"] == first_close["closedAt"]

    again = await billing.billing.get(f"/api/billing/statements/{month}", headers=bearer(company))
    assert again.content == frozen.content

    current = await statement(billing, company, month.next())
    assert current["status"] == "open"
    assert current["closedAt"] is None
    assert current["late"] == {"count": 1, "cost": "0.3000"}
    assert current["totals"] == {"questionCount": 30, "cost": "0.3000"}
    assert current["lines"] == [
        {"jobId": str(first.job_id), "jobTitle": None, "questionCount": 30, "cost": "0.3000"}
    ]
    row = await billing.fetch(
        billing.dbs.billing,
        "SELECT period, late, created_at FROM question_generation_usage WHERE event_id = $1",
        late.event_id,
    )
    assert dict(row[0]) == {
        "period": str(month.next()),
        "late": True,
        "created_at": late.occurred_at,
    }
    # The other company's statement of the month was frozen too.
    theirs = await statement(billing, other, month)
    assert (theirs["status"], theirs["totals"]) == (
        "closed",
        {"questionCount": 7, "cost": "0.0700"},
    )


async def test_statement_figures_equal_the_rows_and_lines_page_by_cost(
    billing: Stack, company: UUID
) -> None:
    month = Period.of(datetime.now(UTC))
    jobs = [job_created(company) for _ in range(5)]
    await record(billing, *jobs)
    await record(
        billing,
        *[
            generated(company, job_id=job.job_id, questions=questions)
            for job, questions in zip(jobs, [3, 9, 9, 1, 4], strict=True)
        ],
        generated(company, job_id=jobs[0].job_id, questions=6),
    )
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await statement(billing, company, month, **params)
        seen += page["lines"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    costs = [Decimal(line["cost"]) for line in seen]
    assert costs == sorted(costs, reverse=True)
    assert len({line["jobId"] for line in seen}) == 5
    rows = await billing.usage(company)
    assert sum(costs) == sum(row["cost"] for row in rows) == Decimal(page["totals"]["cost"])
    nine = [line["jobId"] for line in seen if line["cost"] == "0.0900"]
    assert nine == sorted(nine)  # equal costs: by job id

    foreign = await billing.billing.get(
        f"/api/billing/statements/{month}",
        params={
            "limit": 2,
            "cursor": (await statement(billing, company, month, limit=2))["nextCursor"],
        },
        headers=bearer(uuid.uuid4()),
    )
    assert foreign.status_code == 422
    assert [error["field"] for error in foreign.json()["errors"]] == ["cursor"]


async def test_an_exactly_full_last_page_of_lines_has_no_next_cursor_open_or_closed(
    billing: Stack, company: UUID
) -> None:
    month = last_month()
    day = month.start + timedelta(days=3)
    jobs = [job_created(company, at=day) for _ in range(4)]
    await record(billing, *jobs)
    await record(
        billing,
        *[
            generated(company, job_id=job.job_id, questions=questions, at=day)
            for job, questions in zip(jobs, [1, 2, 3, 4], strict=True)
        ],
    )
    by_cost = [str(job.job_id) for job in reversed(jobs)]

    async def lines_page_by_page(status: str) -> None:
        for limit in (1, 2, 4):

            async def read(params: dict[str, Any], limit: int = limit) -> dict[str, Any]:
                page = await statement(billing, company, month, limit=limit, **params)
                assert page["status"] == status
                return page

            pages = await every_page(read, "lines")
            assert [len(page) for page in pages] == [limit] * (4 // limit), (status, limit)
            assert [line["jobId"] for page in pages for line in page] == by_cost

    await lines_page_by_page("open")  # read live
    await close(billing, month)
    await lines_page_by_page("closed")  # read from the frozen copy
