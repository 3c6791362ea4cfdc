"""SIGKILL the billing worker in the middle of 2,000 events, start it again: 2,000 rows."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from contracts.topology import Topology
from tests.chaos.harness import (
    Figures,
    StartBilling,
    count_rows,
    leftovers,
    many_generated,
    publish_all,
    queue_counts,
    settled_ledger,
)
from tests.support.databases import ServiceDatabases
from tests.support.waiting import eventually

pytestmark = pytest.mark.chaos

EVENTS = 2_000


async def test_sigkill_mid_stream_loses_and_doubles_nothing(
    dbs: ServiceDatabases,
    topology: Topology,
    company: UUID,
    start_billing: StartBilling,
    figures: Figures,
) -> None:
    events = many_generated(company, EVENTS)
    async with start_billing() as billing:
        first_pid = billing.pid
        publishing = asyncio.create_task(publish_all(topology, events))

        await eventually(
            lambda: count_rows(dbs.billing),
            until=lambda rows: rows >= EVENTS * 0.3,
            timeout=60,
            interval=0.01,
        )
        await billing.kill()
        assert billing.returncode == -9
        rows_after_kill = await count_rows(dbs.billing)
        await publishing  # the rest waits in the queue while billing is down
        ready, _ = await queue_counts(topology.billing_queue_name)
        # Committed but not acknowledged when killed: these come back as duplicates.
        redelivered_committed = rows_after_kill + ready - EVENTS
        figures.record(
            rows_at_kill=rows_after_kill,
            queued_while_down=ready,
            committed_not_acked=redelivered_committed,
        )
        assert rows_after_kill < EVENTS, "billing finished before the kill: nothing was tested"
        assert redelivered_committed >= 0, "a message was acknowledged before its commit"

        await billing.start()
        await billing.wait_ready()
        assert billing.pid != first_pid
        result = await settled_ledger(dbs.billing, [e.event_id for e in events], timeout=90)

    dlq, left = await leftovers(topology)
    figures.ledger(result)
    figures.record(dlq=dlq, left_in_queue=left, starts=billing.starts)
    assert result.exact, result
    assert dlq == 0
    assert left == 0
