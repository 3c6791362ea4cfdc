"""`GET /api/billing/summary`: totals, job lines (paged: see test_ledger_reads_api), drafts."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from tests.integration.billing.conftest import (
    ABANDONED_AFTER_HOURS,
    record,
    record_drafts_of_every_age,
)
from tests.support.auth import bearer
from tests.support.events import generated, job_created
from tests.support.stack import Stack

TOTAL_FIELDS = ("questionCount", "promptTokens", "completionTokens", "totalTokens")


async def summary(stack: Stack, company: UUID, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = await stack.billing_json(company, "/api/billing/summary", **params)
    return body


async def all_rows(stack: Stack, company: UUID) -> list[dict[str, Any]]:
    response = await stack.billing.get(
        "/api/billing/usage", params={"limit": 500}, headers=bearer(company)
    )
    assert response.status_code == 200
    rows: list[dict[str, Any]] = response.json()["items"]
    return rows


def add_up(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "generations": len(rows),
        "cost": str(sum((Decimal(row["cost"]) for row in rows), Decimal("0.0000"))),
        **{name: sum(row[name] for row in rows) for name in TOTAL_FIELDS},
    }


def totals_of(line: dict[str, Any]) -> dict[str, Any]:
    return {name: line[name] for name in ("generations", "cost", *TOTAL_FIELDS)}


async def test_totals_equal_the_sum_of_the_rows(billing: Stack, company: UUID) -> None:
    now = datetime.now(UTC)
    first, second = job_created(company), job_created(company, draft="saved-draft")
    await record(billing, first, second)
    await record(
        billing,
        generated(company, at=now - timedelta(minutes=9), job_id=first.job_id, questions=7),
        generated(company, at=now - timedelta(minutes=8), job_id=first.job_id, questions=13),
        generated(company, at=now - timedelta(minutes=7), draft="saved-draft", questions=3),
        generated(company, at=now - timedelta(minutes=6), draft="waiting", questions=1),
        generated(company, at=now - timedelta(minutes=5), draft="waiting", questions=1),
        generated(company, at=now - timedelta(minutes=4), draft="other", questions=49),
        # Another company's usage counts nowhere here.
        generated(uuid.uuid4(), at=now, draft="waiting", questions=50),
    )
    rows = await all_rows(billing, company)
    assert len(rows) == 6

    body = await summary(billing, company)

    assert body["totals"] == add_up(rows)
    assert body["totals"]["cost"] == "0.7400"
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["jobId"] is not None:
            by_job[row["jobId"]].append(row)
    assert {line["jobId"]: totals_of(line) for line in body["jobs"]} == {
        job: add_up(job_rows) for job, job_rows in by_job.items()
    }
    # The reconciled draft is on its job now, not among the drafts.
    assert {line["jobId"] for line in body["jobs"]} == {str(first.job_id), str(second.job_id)}
    drafts = [row for row in rows if row["draftJobId"] is not None]
    assert totals_of(body["drafts"]) == add_up(drafts)
    assert body["drafts"]["count"] == 2
    assert body["drafts"]["abandoned"] == 0
    assert body["nextCursor"] is None
    assert body["abandonedDraftAfterHours"] == ABANDONED_AFTER_HOURS
    # Every row is on a job or a draft: the lines add up to the totals.
    lines = [totals_of(line) for line in body["jobs"]] + [totals_of(body["drafts"])]
    assert sum(Decimal(line["cost"]) for line in lines) == Decimal(body["totals"]["cost"])
    assert sum(line["generations"] for line in lines) == body["totals"]["generations"]


async def test_a_period_narrows_every_figure(billing: Stack, company: UUID) -> None:
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    job = job_created(company)
    await record(billing, job)
    await record(
        billing,
        generated(company, at=t0 - timedelta(seconds=1), job_id=job.job_id, questions=20),
        generated(company, at=t0, job_id=job.job_id, questions=10),
        generated(company, at=t0 + timedelta(hours=1), draft="d", questions=5),
        generated(company, at=t0 + timedelta(days=1), draft="d", questions=40),
    )

    body = await summary(
        billing, company, **{"from": t0.isoformat(), "to": (t0 + timedelta(days=1)).isoformat()}
    )

    assert datetime.fromisoformat(body["from"]) == t0
    assert body["totals"]["generations"] == 2
    assert body["totals"]["cost"] == "0.1500"
    assert body["totals"]["questionCount"] == 15
    assert [(line["jobId"], line["cost"]) for line in body["jobs"]] == [(str(job.job_id), "0.1000")]
    assert (body["drafts"]["count"], body["drafts"]["cost"]) == (1, "0.0500")

    everything = await summary(billing, company)
    assert everything["from"] is None
    assert everything["totals"]["cost"] == "0.7500"


async def test_old_drafts_that_never_became_jobs_are_abandoned(
    billing: Stack, company: UUID
) -> None:
    now, _ = await record_drafts_of_every_age(billing, company)

    body = await summary(billing, company)

    # Still billed: the questions were generated. The drafts themselves: /api/billing/drafts.
    assert (body["drafts"]["count"], body["drafts"]["abandoned"]) == (2, 1)
    assert body["drafts"]["cost"] == "0.2200"
    assert body["totals"]["cost"] == "0.3200"
    assert "abandonedDrafts" not in body

    # Age is the draft's, not the range's: a range starting after its first use keeps it.
    recent = await summary(billing, company, **{"from": (now - timedelta(hours=2)).isoformat()})
    assert (recent["drafts"]["count"], recent["drafts"]["abandoned"]) == (2, 1)
    assert recent["drafts"]["cost"] == "0.1200"


async def test_many_small_costs_add_up_exactly(billing: Stack, company: UUID) -> None:
    await record(billing, *(generated(company, draft="d", questions=1) for _ in range(30)))

    body = await summary(billing, company)

    assert body["totals"]["cost"] == "0.3000"
    assert body["drafts"]["cost"] == "0.3000"
