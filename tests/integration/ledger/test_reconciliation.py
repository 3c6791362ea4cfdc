"""Draft usage lands on its job in any order, exactly once, never across companies."""

from __future__ import annotations

import itertools
import uuid
from decimal import Decimal
from uuid import UUID

import pytest

from services.billing.ledger.record import DraftsReconciled, UsageRecorded
from tests.integration.ledger.conftest import Ledger
from tests.support.events import generated, job_created


@pytest.mark.parametrize("order", list(itertools.permutations(["first", "second", "job"])))
async def test_two_drafts_and_the_job_in_every_order(
    ledger: Ledger, company: UUID, order: tuple[str, ...]
) -> None:
    draft = str(uuid.uuid4())
    job_id = uuid.uuid4()
    events = {
        "first": generated(company, draft=draft),
        "second": generated(company, job_id=UUID(draft)),  # the front end's shape
        "job": job_created(company, job_id=job_id, draft=draft),
    }
    for name in order:
        await ledger.record(events[name])

    rows = await ledger.rows(company)
    assert len(rows) == 2
    assert {row["job_id"] for row in rows} == {job_id}
    assert {row["draft_job_id"] for row in rows} == {None}
    assert sum(row["cost"] for row in rows) == Decimal("0.2000")


async def test_all_three_in_one_batch(ledger: Ledger, company: UUID) -> None:
    draft = str(uuid.uuid4())
    job_id = uuid.uuid4()
    await ledger.record(
        generated(company, draft=draft),
        job_created(company, job_id=job_id, draft=draft),
        generated(company, draft=draft),
    )
    rows = await ledger.rows(company)
    assert [row["job_id"] for row in rows] == [job_id, job_id]


async def test_job_created_reports_what_it_reconciled(ledger: Ledger, company: UUID) -> None:
    draft = str(uuid.uuid4())
    await ledger.record(generated(company, draft=draft, questions=7))
    await ledger.record(generated(company, draft=draft, questions=3))
    job = job_created(company, draft=draft)

    outcome = await ledger.record(job)

    assert outcome[job.event_id] == DraftsReconciled(
        job_id=job.job_id, rows=2, questions=10, cost=Decimal("0.1000")
    )


async def test_usage_for_an_unknown_job_id_waits_for_that_job(
    ledger: Ledger, company: UUID
) -> None:
    job_id = uuid.uuid4()
    await ledger.record(generated(company, job_id=job_id))
    assert (await ledger.rows(company))[0]["draft_job_id"] == str(job_id)

    await ledger.record(job_created(company, job_id=job_id))

    row = (await ledger.rows(company))[0]
    assert (row["job_id"], row["draft_job_id"]) == (job_id, None)


async def test_the_same_generation_five_times_is_one_row(ledger: Ledger, company: UUID) -> None:
    event = generated(company, draft="draft-x")
    outcomes = [await ledger.record(event) for _ in range(4)]
    outcomes.append(await ledger.record(event, event))

    rows = await ledger.rows(company)
    assert len(rows) == 1
    assert rows[0]["event_id"] == event.event_id
    recorded = [outcome[event.event_id] for outcome in outcomes]
    assert [r.new for r in recorded if isinstance(r, UsageRecorded)] == [
        True,
        False,
        False,
        False,
        False,
    ]


async def test_the_same_job_three_times_does_no_harm(ledger: Ledger, company: UUID) -> None:
    draft = "draft-y"
    job = job_created(company, draft=draft)
    await ledger.record(generated(company, draft=draft))
    first = await ledger.record(job)
    again = [await ledger.record(job) for _ in range(2)]

    rows = await ledger.rows(company)
    assert [(row["job_id"], row["draft_job_id"]) for row in rows] == [(job.job_id, None)]
    assert first[job.event_id].rows == 1  # type: ignore[union-attr]
    assert [o[job.event_id].rows for o in again] == [0, 0]  # type: ignore[union-attr]


async def test_a_job_of_another_company_with_the_same_draft_takes_nothing(
    ledger: Ledger, company: UUID
) -> None:
    other = uuid.uuid4()
    draft = str(uuid.uuid4())
    await ledger.record(generated(company, draft=draft))
    await ledger.record(job_created(other, draft=draft))
    # ...nor is a later generation of ours attached to the other company's job
    await ledger.record(generated(company, job_id=UUID(draft)))

    rows = await ledger.rows(company)
    assert [(row["job_id"], row["draft_job_id"]) for row in rows] == [(None, draft), (None, draft)]

    mine = job_created(company, draft=draft)
    await ledger.record(mine)
    assert {row["job_id"] for row in await ledger.rows(company)} == {mine.job_id}


async def test_a_generation_after_its_job_is_attached_at_once(
    ledger: Ledger, company: UUID
) -> None:
    draft = str(uuid.uuid4())
    job = job_created(company, draft=draft)
    await ledger.record(job)

    outcome = await ledger.record(event := generated(company, job_id=UUID(draft)))

    recorded = outcome[event.event_id]
    assert isinstance(recorded, UsageRecorded)
    assert recorded.placement.job_id == job.job_id
    assert (await ledger.rows(company))[0]["job_id"] == job.job_id
