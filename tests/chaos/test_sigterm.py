"""SIGTERM during a stream of events: in-flight work commits and is acknowledged, then exit."""

from __future__ import annotations

import asyncio
import signal
import time
from uuid import UUID

import pytest

from contracts.topology import Topology
from tests.chaos.harness import (
    Figures,
    Publisher,
    StartBilling,
    count_rows,
    many_generated,
    queue_counts,
    settled_ledger,
)
from tests.support.databases import ServiceDatabases
from tests.support.waiting import eventually

pytestmark = pytest.mark.chaos

EVENTS = 2_000
GRACEFUL_TIMEOUT = 10.0


async def test_sigterm_mid_stream_exits_cleanly_and_restart_finishes(
    dbs: ServiceDatabases,
    topology: Topology,
    company: UUID,
    start_billing: StartBilling,
    figures: Figures,
) -> None:
    events = many_generated(company, EVENTS)
    graceful = {"GRACEFUL_TIMEOUT_SECONDS": str(GRACEFUL_TIMEOUT)}
    async with start_billing(extra_env=graceful) as billing:
        async with Publisher(topology) as publisher:

            async def stream() -> None:
                for start in range(0, EVENTS, 50):  # a steady stream, not one burst
                    await publisher.publish(events[start : start + 50])
                    await asyncio.sleep(0.01)

            streaming = asyncio.create_task(stream())
            at_signal = await eventually(
                lambda: count_rows(dbs.billing),
                until=lambda rows: rows >= EVENTS * 0.3,
                timeout=60,
                interval=0.01,
            )
            published_at_signal = publisher.published
            signalled = time.monotonic()
            billing.send(signal.SIGTERM)
            code = await billing.wait(GRACEFUL_TIMEOUT + 15)
            exit_seconds = time.monotonic() - signalled
            await streaming

        rows_at_exit = await count_rows(dbs.billing)
        ready, consumers = await queue_counts(topology.billing_queue_name)
        figures.record(
            rows_at_signal=at_signal,
            published_at_signal=published_at_signal,
            exit_code=code,
            exit_s=round(exit_seconds, 2),
            rows_at_exit=rows_at_exit,
            queued_at_exit=ready,
        )
        # uvicorn re-raises the signal after its graceful shutdown: -15 is a clean exit too.
        assert code in (0, -signal.SIGTERM), billing.tail()
        log = billing.log.read_text()
        assert "Application shutdown complete" in log, billing.tail()
        assert "Traceback" not in log, billing.tail()
        assert consumers == 0
        assert rows_at_exit < EVENTS, "billing finished before the signal: nothing was tested"
        # Every message is either committed (and so acknowledged) or still queued, never both.
        assert rows_at_exit + ready == EVENTS, billing.tail()

        await billing.start()
        await billing.wait_ready()
        result = await settled_ledger(dbs.billing, [e.event_id for e in events], timeout=90)

    dlq, _ = await queue_counts(topology.billing_dlq_name)
    figures.ledger(result)
    figures.record(dlq=dlq)
    assert result.exact, result
    assert dlq == 0
