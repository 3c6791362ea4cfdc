"""Every service refuses a body over its limit with 413, and writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.stack import Stack, start_stack

LIMIT = 64 * 1024


@pytest.fixture
async def capped(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    overrides = {"max_body_bytes": LIMIT}
    async with start_stack(
        dbs,
        prefix,
        question_overrides=overrides,
        jobs_overrides=overrides,
        billing_overrides=overrides,
    ) as running:
        yield running


async def test_a_body_over_the_limit_is_413_and_changes_nothing(
    capped: Stack, company: UUID
) -> None:
    big = {"title": "t", "description": "x" * (LIMIT + 1)}
    for client, path in [
        (capped.jobs, "/api/jobs"),
        (capped.questions, "/api/ai/generate-questions"),
        (capped.billing, "/api/billing/summary"),
    ]:
        response = await client.post(path, json=big, headers=bearer(company))
        assert response.status_code == 413, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"

    listed = await capped.jobs.get("/api/jobs", headers=bearer(company))
    assert listed.json()["items"] == []
    rows = await capped.fetch(capped.dbs.question_gen, "SELECT count(*) AS n FROM outbox")
    assert rows[0]["n"] == 0


async def test_a_body_under_the_limit_is_served(capped: Stack, company: UUID) -> None:
    body = {"title": "t", "description": "x" * (LIMIT // 2)}
    response = await capped.jobs.post("/api/jobs", json=body, headers=bearer(company))
    assert response.status_code == 201, response.text
