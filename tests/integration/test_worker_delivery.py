"""Billing's worker on the real broker: redeliveries, reordering and tenants."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from tests.support.broker import publish_events, queue_depth
from tests.support.databases import ServiceDatabases
from tests.support.events import generated, job_created
from tests.support.stack import Stack, start_stack
from tests.support.waiting import eventually


@pytest.fixture
async def billing(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_stack(dbs, prefix, services=("billing",)) as stack:
        yield stack


async def known_job(stack: Stack, job_id: UUID) -> bool:
    rows = await stack.fetch(
        stack.dbs.billing, "SELECT 1 FROM known_jobs WHERE job_id = $1", job_id
    )
    return bool(rows)


async def test_the_same_generation_delivered_five_times_is_one_row(
    billing: Stack, company: UUID
) -> None:
    event = generated(company, draft="draft-1")
    marker = generated(company, draft="draft-2")  # published after, so seen after

    await publish_events(billing.topology, event, times=5)
    await publish_events(billing.topology, marker)

    rows = await eventually(lambda: billing.usage(company), until=lambda rows: len(rows) >= 2)
    await eventually(
        lambda: queue_depth(billing.topology.billing_queue_name), until=lambda n: n == 0
    )
    rows = await billing.usage(company)
    assert sorted(row["event_id"] for row in rows) == sorted([event.event_id, marker.event_id])


async def test_job_created_consumed_before_the_generation(billing: Stack, company: UUID) -> None:
    draft = str(uuid.uuid4())
    job = job_created(company, draft=draft)

    await publish_events(billing.topology, job, times=3)
    await eventually(lambda: known_job(billing, job.job_id))
    await publish_events(billing.topology, generated(company, job_id=UUID(draft)))

    rows = await eventually(lambda: billing.usage(company))
    assert (rows[0]["job_id"], rows[0]["draft_job_id"]) == (job.job_id, None)


async def test_another_companys_job_with_the_same_draft_takes_nothing(
    billing: Stack, company: UUID
) -> None:
    draft = str(uuid.uuid4())
    intruder = job_created(uuid.uuid4(), draft=draft)
    await publish_events(billing.topology, generated(company, draft=draft))
    await eventually(lambda: billing.usage(company))

    await publish_events(billing.topology, intruder)
    await eventually(lambda: known_job(billing, intruder.job_id))

    rows = await billing.usage(company)
    assert [(row["job_id"], row["draft_job_id"]) for row in rows] == [(None, draft)]


async def test_a_burst_of_events_is_billed_exactly_once_each(billing: Stack, company: UUID) -> None:
    drafts = [str(uuid.uuid4()) for _ in range(20)]
    events = [generated(company, draft=draft) for draft in drafts for _ in range(10)]
    jobs = [job_created(company, draft=draft) for draft in drafts]

    await publish_events(billing.topology, *events[:100], *jobs[:10], *events[100:], *jobs[10:])

    rows = await eventually(
        lambda: billing.usage(company),
        until=lambda rows: len(rows) == 200 and all(row["job_id"] for row in rows),
    )
    assert len({row["event_id"] for row in rows}) == 200
    by_job = {job.job_id: 0 for job in jobs}
    for row in rows:
        by_job[row["job_id"]] += 1
    assert set(by_job.values()) == {10}
