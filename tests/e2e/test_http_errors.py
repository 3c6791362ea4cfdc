"""401, 403, 404 and 422 as the contract says; a rejected request changes nothing."""

from __future__ import annotations

import time
import uuid
from typing import Any
from uuid import UUID

import jwt
import pytest

from tests.support.auth import TEST_SECRET, bearer
from tests.support.stack import Stack

GENERATE = "/api/ai/generate-questions"
VALID_GENERATION = {
    "draftJobId": "draft-1",
    "jobDescription": "Data engineer",
    "numberOfQuestions": 5,
}


def token(claims: dict[str, Any], secret: str = TEST_SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


async def nothing_written(stack: Stack) -> None:
    for database, table in (
        (stack.dbs.question_gen, "generations"),
        (stack.dbs.question_gen, "outbox"),
        (stack.dbs.jobs, "jobs"),
        (stack.dbs.jobs, "outbox"),
        (stack.dbs.billing, "question_generation_usage"),
    ):
        rows = await stack.fetch(database, f"SELECT count(*) AS n FROM {table}")
        assert rows[0]["n"] == 0, f"{table} has rows"


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-jwt"},
        token(
            {"company_id": str(uuid.uuid4()), "exp": int(time.time()) + 3600},
            "another-secret-0123456789-0123456789",
        ),
        token({"company_id": str(uuid.uuid4()), "exp": int(time.time()) - 5}),
        token({"exp": int(time.time()) + 3600}),
    ],
    ids=["none", "basic", "garbage", "bad-signature", "expired", "no-company"],
)
async def test_every_api_route_wants_a_valid_token(stack: Stack, headers: dict[str, str]) -> None:
    assert_problem(
        await stack.questions.post(GENERATE, json=VALID_GENERATION, headers=headers), 401
    )
    assert_problem(await stack.jobs.post("/api/jobs", json={"title": "t"}, headers=headers), 401)
    assert_problem(await stack.jobs.get(f"/api/jobs/{uuid.uuid4()}", headers=headers), 401)
    assert_problem(await stack.jobs.get("/api/jobs", headers=headers), 401)
    await nothing_written(stack)


async def test_a_body_company_other_than_the_tokens_is_403(stack: Stack, company: UUID) -> None:
    other = str(uuid.uuid4())
    response = await stack.questions.post(
        GENERATE, json={**VALID_GENERATION, "companyId": other}, headers=bearer(company)
    )
    assert_problem(response, 403)
    response = await stack.jobs.post(
        "/api/jobs", json={"title": "t", "companyId": other}, headers=bearer(company)
    )
    assert_problem(response, 403)
    await nothing_written(stack)


async def test_another_companys_job_is_404_as_if_it_did_not_exist(
    stack: Stack, company: UUID
) -> None:
    created = await stack.jobs.post("/api/jobs", json={"title": "Mine"}, headers=bearer(company))
    job_id = created.json()["id"]
    stranger = uuid.uuid4()

    theirs = await stack.jobs.get(f"/api/jobs/{job_id}", headers=bearer(stranger))
    missing = await stack.jobs.get(f"/api/jobs/{uuid.uuid4()}", headers=bearer(stranger))

    assert assert_problem(theirs, 404) == assert_problem(missing, 404)
    listing = await stack.jobs.get("/api/jobs", headers=bearer(stranger))
    assert listing.json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"jobDescription": "d", "numberOfQuestions": 3}, "jobId"),
        ({**VALID_GENERATION, "jobDescription": ""}, "jobDescription"),
        ({**VALID_GENERATION, "jobDescription": "x" * 20_001}, "jobDescription"),
        ({**VALID_GENERATION, "numberOfQuestions": 0}, "numberOfQuestions"),
        ({**VALID_GENERATION, "numberOfQuestions": 51}, "numberOfQuestions"),
        ({**VALID_GENERATION, "numberOfQuestions": "ten"}, "numberOfQuestions"),
        ({**VALID_GENERATION, "jobId": "not-a-uuid"}, "jobId"),
        ({**VALID_GENERATION, "draftJobId": "d" * 101}, "draftJobId"),
        ({**VALID_GENERATION, "companyId": "acme"}, "companyId"),
    ],
)
async def test_bad_generation_requests_are_422_naming_the_field(
    stack: Stack, company: UUID, body: dict[str, Any], field: str
) -> None:
    response = await stack.questions.post(GENERATE, json=body, headers=bearer(company))
    problem = assert_problem(response, 422)
    assert field in problem["detail"]
    await nothing_written(stack)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"title": "t", "description": "d" * 50_001}, "description"),
        ({"title": "t", "draftJobId": "d" * 101}, "draftJobId"),
        ({"title": "t", "draftJobId": ""}, "draftJobId"),
        # U+0000, which PostgreSQL cannot store: in a known field, and in another job field.
        ({"title": "a\x00b"}, "title"),
        ({"title": "t", "location": "Lisbon\x00"}, "location"),
    ],
)
async def test_bad_job_requests_are_422_naming_the_field(
    stack: Stack, company: UUID, body: dict[str, Any], field: str
) -> None:
    response = await stack.jobs.post("/api/jobs", json=body, headers=bearer(company))
    problem = assert_problem(response, 422)
    assert field in problem["detail"]
    assert any(error["field"] == field for error in problem["errors"])
    await nothing_written(stack)


async def test_a_body_that_is_not_json_is_422(stack: Stack, company: UUID) -> None:
    response = await stack.jobs.post(
        "/api/jobs",
        content=b"{not json",
        headers={**bearer(company), "content-type": "application/json"},
    )
    assert_problem(response, 422)
    await nothing_written(stack)
