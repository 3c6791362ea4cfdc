"""The seed's story over HTTP, through the real broker and databases."""

from __future__ import annotations

import uuid
from decimal import Decimal
from uuid import UUID

from tests.support.auth import bearer
from tests.support.stack import Stack
from tests.support.waiting import eventually

DESCRIPTION = "Senior Python engineer: event-driven billing on RabbitMQ and PostgreSQL."

# The seed's verification queries, as written there.
DRAFT_ROWS = "SELECT * FROM question_generation_usage WHERE draft_job_id IS NOT NULL;"
RECONCILED_ROWS = (
    "SELECT * FROM question_generation_usage WHERE job_id IS NOT NULL AND draft_job_id IS NULL;"
)


async def generate(stack: Stack, company: UUID, **body: object) -> dict[str, object]:
    payload = {"jobDescription": DESCRIPTION, "numberOfQuestions": 10, **body}
    response = await stack.questions.post(
        "/api/ai/generate-questions", json=payload, headers=bearer(company)
    )
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


async def save_job(stack: Stack, company: UUID, **body: object) -> dict[str, object]:
    payload = {"title": "Senior Python engineer", "description": DESCRIPTION, **body}
    response = await stack.jobs.post("/api/jobs", json=payload, headers=bearer(company))
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()
    return result


async def test_draft_billed_then_moved_to_the_saved_job(stack: Stack, company: UUID) -> None:
    draft = str(uuid.uuid4())

    generation = await generate(stack, company, draftJobId=draft)
    assert generation["questionCount"] == 10
    assert generation["model"] == "offline"

    rows = await eventually(lambda: stack.fetch(stack.dbs.billing, DRAFT_ROWS), until=bool)
    assert len(rows) == 1
    draft_row = rows[0]
    assert draft_row["job_id"] is None
    assert draft_row["draft_job_id"] == draft
    assert draft_row["company_id"] == company
    assert draft_row["question_count"] == 10
    assert draft_row["cost"] == Decimal("0.1000")
    assert draft_row["event_id"] == UUID(str(generation["generationId"]))

    job = await save_job(stack, company, draftJobId=draft)

    reconciled = await eventually(
        lambda: stack.fetch(stack.dbs.billing, RECONCILED_ROWS), until=bool
    )
    assert [row["id"] for row in reconciled] == [draft_row["id"]]
    assert reconciled[0]["job_id"] == UUID(str(job["id"]))
    assert reconciled[0]["cost"] == Decimal("0.1000")
    assert await stack.fetch(stack.dbs.billing, DRAFT_ROWS) == []
    # The job's title travelled with its JobCreated: billing lists the job by it.
    summary = await stack.billing_json(company, "/api/billing/summary")
    assert [(line["jobId"], line["jobTitle"]) for line in summary["jobs"]] == [
        (job["id"], "Senior Python engineer")
    ]


async def test_front_end_sends_the_draft_uuid_as_job_id(stack: Stack, company: UUID) -> None:
    draft = str(uuid.uuid4())

    await generate(stack, company, jobId=draft)
    await eventually(lambda: stack.usage(company), until=lambda rows: len(rows) == 1)
    assert (await stack.usage(company))[0]["draft_job_id"] == draft

    job = await save_job(stack, company, draftJobId=draft)

    rows = await eventually(
        lambda: stack.usage(company), until=lambda rows: rows[0]["job_id"] is not None
    )
    assert rows[0]["job_id"] == UUID(str(job["id"]))
    assert rows[0]["draft_job_id"] is None


async def test_usage_for_a_saved_job_is_attached_at_once(stack: Stack, company: UUID) -> None:
    job = await save_job(stack, company)
    job_id = UUID(str(job["id"]))
    # Billing learns of the job before the generation arrives.
    await eventually(
        lambda: stack.fetch(stack.dbs.billing, "SELECT 1 FROM known_jobs WHERE job_id = $1", job_id)
    )

    await generate(stack, company, jobId=str(job_id), numberOfQuestions=5)

    rows = await eventually(lambda: stack.usage(company))
    assert rows[0]["job_id"] == job_id
    assert rows[0]["draft_job_id"] is None
    assert rows[0]["cost"] == Decimal("0.0500")


async def test_a_draft_id_spelled_differently_by_each_service_still_meets_its_job(
    stack: Stack, company: UUID
) -> None:
    """Upper case to the question service, braces as the jobId, lower case to the jobs service."""
    draft = uuid.uuid4()
    first = await generate(stack, company, draftJobId=str(draft).upper())
    second = await generate(stack, company, jobId="{" + str(draft).upper() + "}")
    assert second["jobId"] == str(draft)  # a UUID field: canonical already
    assert first["draftJobId"] == str(draft)  # shown as it is stored: canonical
    rows = await eventually(lambda: stack.usage(company), until=lambda rows: len(rows) == 2)
    assert {row["draft_job_id"] for row in rows} == {str(draft)}
    # The billing read finds the draft by any spelling of it.
    listed = await stack.billing_json(
        company, "/api/billing/usage", draftJobId=f"urn:uuid:{str(draft).upper()}"
    )
    assert len(listed["items"]) == 2

    job = await save_job(stack, company, draftJobId=str(draft).replace("-", ""))
    assert job["draftJobId"] == str(draft)

    rows = await eventually(
        lambda: stack.usage(company),
        until=lambda rows: all(row["job_id"] is not None for row in rows),
    )
    assert {row["job_id"] for row in rows} == {UUID(str(job["id"]))}
    assert sum(row["cost"] for row in rows) == Decimal("0.2000")
    drafts = await stack.billing_json(company, "/api/billing/drafts")
    assert drafts["drafts"] == []

    # One draft, one job, however the second attempt spells it.
    again = await stack.jobs.post(
        "/api/jobs",
        json={"title": "Again", "draftJobId": str(draft).upper()},
        headers=bearer(company),
    )
    assert again.status_code == 409, again.text
    assert str(job["id"]) in again.text
