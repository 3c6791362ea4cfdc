"""The jobs API: one job per draft, idempotent creation, newest-first pages."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

from tests.support.auth import bearer
from tests.support.paging import every_page
from tests.support.stack import Stack
from tests.support.waiting import eventually


async def count(stack: Stack, database: str, query: str) -> int:
    return int((await stack.fetch(database, query))[0][0])


async def test_a_second_job_from_the_same_draft_is_409_naming_the_first(
    stack: Stack, company: UUID
) -> None:
    body = {"title": "Analyst", "draftJobId": "draft-9"}
    first = await stack.jobs.post("/api/jobs", json=body, headers=bearer(company))
    second = await stack.jobs.post("/api/jobs", json=body, headers=bearer(company))

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["detail"] == "a job was already created from this draft"
    # Another company may use the same draft id.
    theirs = await stack.jobs.post("/api/jobs", json=body, headers=bearer(uuid.uuid4()))
    assert theirs.status_code == 201
    assert await count(stack, stack.dbs.jobs, "SELECT count(*) FROM jobs") == 2


async def test_a_retry_with_the_same_idempotency_key_returns_the_same_job(
    stack: Stack, company: UUID
) -> None:
    headers = {**bearer(company), "Idempotency-Key": "save-42"}
    body = {"title": "Analyst", "draftJobId": str(uuid.uuid4()), "location": "Lisbon"}

    responses = await asyncio.gather(
        *(stack.jobs.post("/api/jobs", json=body, headers=headers) for _ in range(5))
    )

    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert responses[0].json()["details"] == {"location": "Lisbon"}
    assert await count(stack, stack.dbs.jobs, "SELECT count(*) FROM jobs") == 1
    # One JobCreated: billing knows one job, and the outbox emptied.
    await eventually(
        lambda: count(stack, stack.dbs.jobs, "SELECT count(*) FROM outbox"), until=lambda n: n == 0
    )
    await eventually(
        lambda: count(stack, stack.dbs.billing, "SELECT count(*) FROM known_jobs"),
        until=lambda n: n >= 1,
    )
    assert await count(stack, stack.dbs.billing, "SELECT count(*) FROM known_jobs") == 1


async def test_a_retry_of_a_refused_draft_is_refused_again_and_leaves_no_claim(
    stack: Stack, company: UUID
) -> None:
    body = {"title": "Analyst", "draftJobId": "draft-used"}
    first = await stack.jobs.post("/api/jobs", json=body, headers=bearer(company))
    headers = {**bearer(company), "Idempotency-Key": "save-again"}
    refused = [await stack.jobs.post("/api/jobs", json=body, headers=headers) for _ in range(2)]

    assert [response.status_code for response in refused] == [409, 409]
    assert {response.json()["id"] for response in refused} == {first.json()["id"]}
    keys = "SELECT count(*) FROM idempotency_keys"
    assert await count(stack, stack.dbs.jobs, keys) == 0
    assert await count(stack, stack.dbs.jobs, "SELECT count(*) FROM jobs") == 1


async def test_an_idempotency_key_reused_for_another_request_is_422(
    stack: Stack, company: UUID
) -> None:
    headers = {**bearer(company), "Idempotency-Key": "k-1"}
    first = await stack.jobs.post("/api/jobs", json={"title": "A"}, headers=headers)
    second = await stack.jobs.post("/api/jobs", json={"title": "B"}, headers=headers)
    assert first.status_code == 201
    assert second.status_code == 422
    assert "Idempotency-Key" in second.json()["detail"]


async def test_jobs_are_listed_newest_first_page_by_page(stack: Stack, company: UUID) -> None:
    made = []
    for number in range(5):
        response = await stack.jobs.post(
            "/api/jobs", json={"title": f"Job {number}"}, headers=bearer(company)
        )
        made.append(response.json()["id"])

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await stack.jobs.get("/api/jobs", params=params, headers=bearer(company))).json()
        seen.extend(job["id"] for job in page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))

    one = await stack.jobs.get(f"/api/jobs/{made[0]}", headers=bearer(company))
    assert one.json()["title"] == "Job 0"


async def test_an_exactly_full_last_page_of_jobs_has_no_next_cursor(
    stack: Stack, company: UUID
) -> None:
    made = []
    for number in range(4):
        response = await stack.jobs.post(
            "/api/jobs", json={"title": f"Job {number}"}, headers=bearer(company)
        )
        made.append(response.json()["id"])

    for limit in (1, 2, 4):

        async def read(params: dict[str, Any], limit: int = limit) -> dict[str, Any]:
            response = await stack.jobs.get(
                "/api/jobs", params={"limit": limit, **params}, headers=bearer(company)
            )
            assert response.status_code == 200, response.text
            page: dict[str, Any] = response.json()
            return page

        pages = await every_page(read, "items")
        assert [len(page) for page in pages] == [limit] * (4 // limit)
        assert [job["id"] for page in pages for job in page] == list(reversed(made))
