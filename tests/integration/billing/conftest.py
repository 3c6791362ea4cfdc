"""Billing alone (its worker and read API), fed events through the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.events import Event, JobCreated, QuestionsGenerated
from tests.support.broker import publish_events
from tests.support.databases import ServiceDatabases
from tests.support.stack import Stack, start_stack
from tests.support.waiting import eventually

ABANDONED_AFTER_HOURS = 24.0


@pytest.fixture
async def billing(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_stack(
        dbs,
        prefix,
        services=("billing",),
        billing_overrides={"abandoned_draft_after_hours": ABANDONED_AFTER_HOURS},
    ) as running:
        yield running


async def record(stack: Stack, *events: Event) -> None:
    """Publish the events and wait until billing has committed every one of them."""
    await publish_events(stack.topology, *events)
    usage_ids = [event.event_id for event in events if isinstance(event, QuestionsGenerated)]
    job_ids = [event.job_id for event in events if isinstance(event, JobCreated)]

    async def committed() -> bool:
        rows = await stack.fetch(
            stack.dbs.billing,
            "SELECT (SELECT count(*) FROM question_generation_usage WHERE event_id = ANY($1))"
            " + (SELECT count(*) FROM known_jobs WHERE job_id = ANY($2)) AS done",
            usage_ids,
            job_ids,
        )
        return int(rows[0]["done"]) == len(usage_ids) + len(job_ids)

    await eventually(committed, timeout=30)
