"""Billing's broker connection cut and restored: it consumes again without a restart.

`/readyz` must say 503 (consumer check false) while billing has no consumer on
the billing queue, and 200 once it has one again; the broker's own consumer
count is the witness.
"""

from __future__ import annotations

import asyncio
import random
import time
from uuid import UUID

import pytest

from contracts.events import QuestionsGenerated
from contracts.topology import Topology
from tests.chaos.harness import (
    Figures,
    Publisher,
    StartBilling,
    count_rows,
    declare,
    many_generated,
    publish_all,
    queue_counts,
    settled_ledger,
)
from tests.support.databases import ServiceDatabases
from tests.support.env import RABBITMQ_URL
from tests.support.processes import ServiceProcess
from tests.support.proxy import TcpProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.chaos


async def readiness(billing: ServiceProcess) -> tuple[int, dict[str, object]]:
    status, body = await billing.readyz()
    checks = body.get("checks", {})
    assert isinstance(checks, dict)
    return status, checks


async def wait_not_consuming(billing: ServiceProcess, topology: Topology) -> dict[str, object]:
    _status, checks = await eventually(
        lambda: readiness(billing), until=lambda result: result[0] == 503, timeout=10
    )
    assert checks["consumer"] is False, checks
    _, consumers = await queue_counts(topology.billing_queue_name)
    assert consumers == 0
    return checks


async def wait_consuming(billing: ServiceProcess, topology: Topology, timeout: float = 20) -> None:
    await eventually(
        lambda: readiness(billing),
        until=lambda result: result[0] == 200,
        timeout=timeout,
        interval=0.1,
    )
    _, consumers = await queue_counts(topology.billing_queue_name)
    assert consumers == 1


async def test_consumes_again_after_broker_connection_cuts(
    dbs: ServiceDatabases,
    topology: Topology,
    company: UUID,
    broker_proxy: TcpProxy,
    start_billing: StartBilling,
    figures: Figures,
) -> None:
    sent: list[UUID] = []
    await declare(topology)  # so that events can be published before billing connects
    proxy = broker_proxy
    proxy.cut()  # RabbitMQ unreachable when billing starts
    async with start_billing(rabbitmq_url=proxy.url(RABBITMQ_URL), wait_ready=False) as billing:
        await eventually(billing.readyz, until=lambda result: result[0] != 0, timeout=30)
        await wait_not_consuming(billing, topology)
        proxy.restore()
        await wait_consuming(billing, topology)
        pid = billing.pid

        before = many_generated(company, 100)
        await publish_all(topology, before)
        sent += [e.event_id for e in before]
        await eventually(lambda: count_rows(dbs.billing), until=lambda n: n == 100, timeout=30)

        # A cut in the middle of a stream: what was in flight is redelivered.
        during = many_generated(company, 1_000)
        sent += [e.event_id for e in during]
        async with Publisher(topology) as publisher:
            streaming = asyncio.create_task(stream(publisher, during))
            await eventually(
                lambda: count_rows(dbs.billing), until=lambda n: n >= 300, interval=0.01
            )
            proxy.cut()
            checks = await wait_not_consuming(billing, topology)
            assert checks["database"] is True
            await asyncio.sleep(1.0)
            rows_while_cut = await count_rows(dbs.billing)
            await asyncio.sleep(1.0)
            assert await count_rows(dbs.billing) == rows_while_cut  # nothing consumed
            proxy.restore()
            await wait_consuming(billing, topology)
            await streaming

        # A flapping link: cuts at random moments, some during reconnection itself.
        rng = random.Random(20240601)
        for _ in range(6):
            await asyncio.sleep(rng.uniform(0.05, 1.2))
            proxy.cut()
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            proxy.restore()
        await wait_consuming(billing, topology, timeout=30)

        after = many_generated(company, 200)
        await publish_all(topology, after)
        sent += [e.event_id for e in after]
        result = await settled_ledger(dbs.billing, sent, timeout=60)
        assert billing.pid == pid
        assert billing.starts == 1
        figures.record(cuts=proxy.cuts, connections=proxy.accepted, refused=proxy.refused)

    dlq, _ = await queue_counts(topology.billing_dlq_name)
    figures.ledger(result)
    figures.record(dlq=dlq, rows_while_cut=rows_while_cut)
    assert result.exact, result
    assert dlq == 0


async def stream(publisher: Publisher, events: list[QuestionsGenerated], chunk: int = 50) -> None:
    for start in range(0, len(events), chunk):
        await publisher.publish(events[start : start + chunk])
        await asyncio.sleep(0.02)


async def test_partition_without_resets_is_noticed_by_heartbeats(
    dbs: ServiceDatabases,
    topology: Topology,
    company: UUID,
    broker_proxy: TcpProxy,
    start_billing: StartBilling,
    figures: Figures,
) -> None:
    """Packets dropped, nothing reset: `/readyz` must not say ready for minutes meanwhile.

    Billing runs with its default heartbeat (the URL names none).
    """
    await declare(topology)
    proxy = broker_proxy
    async with start_billing(rabbitmq_url=proxy.url(RABBITMQ_URL)) as billing:
        proxy.freeze()
        frozen = time.monotonic()
        during = many_generated(company, 100)  # wait in the queue, or go to a dead consumer
        await publish_all(topology, during)
        await eventually(
            lambda: readiness(billing), until=lambda result: result[0] == 503, timeout=60
        )
        noticed = time.monotonic() - frozen
        await wait_not_consuming(billing, topology)
        proxy.restore()
        await wait_consuming(billing, topology)
        after = many_generated(company, 100)
        await publish_all(topology, after)
        result = await settled_ledger(dbs.billing, [e.event_id for e in during + after], timeout=60)
        assert billing.starts == 1

    figures.ledger(result)
    figures.record(noticed_after_s=round(noticed, 1))
    assert result.exact, result
