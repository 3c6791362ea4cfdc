"""`GET /api/billing/usage`: the company's rows, filtered, newest first, page by page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from tests.integration.billing.conftest import record
from tests.support.auth import bearer
from tests.support.events import generated, job_created
from tests.support.paging import every_page
from tests.support.stack import Stack

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

CONTRACT_FIELDS = {
    "id",
    "companyId",
    "jobId",
    "draftJobId",
    "promptTokens",
    "completionTokens",
    "totalTokens",
    "questionCount",
    "cost",
    "modelUsed",
    "createdAt",
    "period",
    "priceId",
    "jobTitle",
    "currency",
}


async def usage(stack: Stack, company: UUID, **params: Any) -> dict[str, Any]:
    response = await stack.billing.get("/api/billing/usage", params=params, headers=bearer(company))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


async def test_a_row_has_the_contract_shape(billing: Stack, company: UUID) -> None:
    draft = str(uuid.uuid4())
    event = generated(company, at=T0, draft=draft, questions=10, prompt_tokens=512)
    await record(billing, event)

    page = await usage(billing, company)

    assert page["nextCursor"] is None
    [row] = page["items"]
    assert set(row) == CONTRACT_FIELDS
    assert row["companyId"] == str(company)
    assert row["jobId"] is None
    assert row["draftJobId"] == draft
    assert (row["promptTokens"], row["completionTokens"], row["totalTokens"]) == (512, 200, 712)
    assert row["questionCount"] == 10
    assert row["cost"] == "0.1000"
    assert row["modelUsed"] == "gpt-4o"
    assert datetime.fromisoformat(row["createdAt"]) == T0

    one = await billing.billing.get(f"/api/billing/usage/{row['id']}", headers=bearer(company))
    assert one.status_code == 200
    assert one.json() == row


async def test_filters_by_job_draft_status_and_period(billing: Stack, company: UUID) -> None:
    job = job_created(company)
    await record(billing, job)
    on_job = [
        generated(company, at=T0, job_id=job.job_id, questions=5),
        generated(company, at=T0 + timedelta(hours=1), job_id=job.job_id),
    ]
    first_draft = generated(company, at=T0 + timedelta(hours=2), draft="draft-1")
    second_draft = generated(company, at=T0 + timedelta(hours=3), draft="draft-2")
    await record(billing, *on_job, first_draft, second_draft)
    everything = await usage(billing, company)
    id_at: dict[datetime, str] = {
        datetime.fromisoformat(row["createdAt"]): row["id"] for row in everything["items"]
    }
    assert len(id_at) == 4

    def row_at(moment: datetime) -> str:
        return id_at[moment]

    by_job = await usage(billing, company, jobId=str(job.job_id))
    assert ids(by_job) == [row_at(T0 + timedelta(hours=1)), row_at(T0)]
    assert [row["cost"] for row in by_job["items"]] == ["0.1000", "0.0500"]

    by_draft = await usage(billing, company, draftJobId="draft-1")
    assert ids(by_draft) == [row_at(T0 + timedelta(hours=2))]

    drafts = await usage(billing, company, status="draft")
    assert {row["draftJobId"] for row in drafts["items"]} == {"draft-1", "draft-2"}
    assert all(row["jobId"] is None for row in drafts["items"])

    jobs = await usage(billing, company, status="job")
    assert ids(jobs) == ids(by_job)

    # `from` inclusive, `to` exclusive.
    window = await usage(
        billing,
        company,
        **{
            "from": (T0 + timedelta(hours=1)).isoformat(),
            "to": (T0 + timedelta(hours=3)).isoformat(),
        },
    )
    assert ids(window) == [row_at(T0 + timedelta(hours=2)), row_at(T0 + timedelta(hours=1))]

    # Filters combine.
    assert ids(await usage(billing, company, status="draft", jobId=str(job.job_id))) == []
    since = await usage(billing, company, status="job", **{"from": "2025-03-01T12:30:00Z"})
    assert ids(since) == [row_at(T0 + timedelta(hours=1))]


async def test_pages_follow_each_other_newest_first(billing: Stack, company: UUID) -> None:
    # Three rows share one instant: the id breaks the tie, so no row is skipped or repeated.
    moments = [T0, T0, T0, T0 + timedelta(seconds=1), T0 + timedelta(minutes=5)]
    moments += [T0 - timedelta(days=1), T0 + timedelta(microseconds=1)]
    await record(billing, *(generated(company, at=moment, draft="d") for moment in moments))

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await usage(billing, company, **params)
        pages += 1
        seen.extend(page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
        assert len(page["items"]) == 3

    assert pages == 3
    assert len(seen) == len(moments)
    assert len({row["id"] for row in seen}) == len(moments)
    keys = [(datetime.fromisoformat(row["createdAt"]), UUID(row["id"])) for row in seen]
    assert keys == sorted(keys, reverse=True)


async def test_an_exactly_full_last_page_has_no_next_cursor(billing: Stack, company: UUID) -> None:
    events = [generated(company, at=T0 + timedelta(seconds=n), draft="d") for n in range(4)]
    await record(billing, *events)
    rows = await billing.usage(company)
    newest_first = [str(row["id"]) for row in sorted(rows, key=lambda r: r["created_at"])][::-1]

    for limit in (1, 2, 4):

        async def read(params: dict[str, Any], limit: int = limit) -> dict[str, Any]:
            return await usage(billing, company, limit=limit, **params)

        pages = await every_page(read, "items")
        # Every page full, the last one too: its nextCursor is null, no empty page follows.
        assert [len(page) for page in pages] == [limit] * (4 // limit)
        assert [row["id"] for page in pages for row in page] == newest_first


async def test_another_company_sees_nothing(billing: Stack, company: UUID) -> None:
    other = uuid.uuid4()
    job = job_created(company)
    await record(billing, job)
    await record(billing, generated(company, job_id=job.job_id), generated(company, draft="d"))
    mine = await usage(billing, company)
    assert len(mine["items"]) == 2

    assert await usage(billing, other) == {"currency": "USD", "items": [], "nextCursor": None}
    assert ids(await usage(billing, other, jobId=str(job.job_id))) == []
    assert ids(await usage(billing, other, draftJobId="d")) == []
    for row in mine["items"]:
        theirs = await billing.billing.get(f"/api/billing/usage/{row['id']}", headers=bearer(other))
        assert theirs.status_code == 404
        assert theirs.headers["content-type"] == "application/problem+json"
        assert theirs.json()["detail"] == "usage not found"
    unknown = await billing.billing.get(
        f"/api/billing/usage/{uuid.uuid4()}", headers=bearer(company)
    )
    assert unknown.status_code == 404

    summary = await billing.billing.get("/api/billing/summary", headers=bearer(other))
    assert summary.status_code == 200
    assert summary.json()["totals"]["generations"] == 0
    assert summary.json()["jobs"] == []


async def test_no_token_is_401(billing: Stack) -> None:
    for path in (
        "/api/billing/usage",
        "/api/billing/summary",
        f"/api/billing/usage/{uuid.uuid4()}",
    ):
        response = await billing.billing.get(path)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_cursor_used_for_another_company_range_or_filter_is_a_422(
    billing: Stack, company: UUID
) -> None:
    """A cursor is bound to the company and to every parameter that shapes the list."""
    other = uuid.uuid4()
    await record(
        billing,
        *(generated(company, at=T0 + timedelta(minutes=n), draft="d") for n in range(3)),
        *(generated(other, at=T0 + timedelta(minutes=n), draft="d") for n in range(3)),
    )
    within = {"from": T0.isoformat(), "to": (T0 + timedelta(days=1)).isoformat()}
    first = await usage(billing, company, limit=1, **within)
    cursor = first["nextCursor"]
    assert cursor
    second = await usage(billing, company, limit=1, cursor=cursor, **within)
    assert len(second["items"]) == 1

    elsewhere: list[tuple[UUID, dict[str, Any]]] = [
        (other, within),  # another company's list
        (company, {}),  # the same company, every row instead of the range
        (company, {**within, "from": (T0 - timedelta(days=1)).isoformat()}),
        (company, {**within, "draftJobId": "d"}),
        (company, {**within, "status": "draft"}),
    ]
    for who, params in elsewhere:
        response = await billing.billing.get(
            "/api/billing/usage",
            params={"limit": 1, "cursor": cursor, **params},
            headers=bearer(who),
        )
        assert response.status_code == 422, (who, params, response.text)
        assert [error["field"] for error in response.json()["errors"]] == ["cursor"]
