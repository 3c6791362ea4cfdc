"""Billing's database connections cut in the middle of batches: nothing lost, nothing doubled.

A cut can land before a batch's COMMIT (it is rolled back and retried) or
after the COMMIT reached PostgreSQL but before its answer reached billing (the
retry finds the rows already there). Either way the messages stay
unacknowledged until a commit is known, and each event has one row.
"""

from __future__ import annotations

import asyncio
import operator
import re
from collections.abc import AsyncIterator
from functools import partial
from uuid import UUID

import asyncpg
import httpx
import pytest

from contracts.topology import Topology
from tests.chaos.harness import (
    Figures,
    Publisher,
    StartBilling,
    count_rows,
    leftovers,
    many_generated,
    publish_all,
    queue_counts,
    settled_ledger,
)
from tests.support.databases import ServiceDatabases
from tests.support.processes import ServiceProcess
from tests.support.proxy import TcpProxy
from tests.support.stack import start_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.chaos

EVENTS = 1_500
CUT_AT = (250, 600, 1_000)  # rows in the ledger when each cut happens
SMALL_BATCHES = {"BATCH_MAX_SIZE": "100"}  # many commits, so that a cut lands in one


@pytest.fixture
async def billing_behind_proxy(
    dbs: ServiceDatabases, database_proxy: TcpProxy, start_billing: StartBilling
) -> AsyncIterator[ServiceProcess]:
    """Billing reaching its database through the proxy, in small batches."""
    async with start_billing(
        database_url=database_proxy.url(dbs.billing), extra_env=SMALL_BATCHES
    ) as billing:
        yield billing


async def metric(billing: ServiceProcess, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{billing.base_url}/metrics")).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_database_cut_mid_batch(
    dbs: ServiceDatabases,
    topology: Topology,
    company: UUID,
    database_proxy: TcpProxy,
    billing_behind_proxy: ServiceProcess,
    figures: Figures,
) -> None:
    events = many_generated(company, EVENTS)
    proxy, billing = database_proxy, billing_behind_proxy
    async with Publisher(topology) as publisher:
        streaming = asyncio.create_task(publisher.publish(events, window=100))
        for threshold in CUT_AT:
            await eventually(
                lambda: count_rows(dbs.billing),
                until=partial(operator.le, threshold),
                timeout=60,
                interval=0.005,
            )
            proxy.cut()
            _status, body = await eventually(
                billing.readyz, until=lambda result: result[0] == 503, timeout=10
            )
            assert body["checks"] == {"database": False, "broker": True, "consumer": True}
            await asyncio.sleep(1.5)
            proxy.restore()
        await streaming
    result = await settled_ledger(dbs.billing, [e.event_id for e in events], timeout=90)
    retries = await metric(billing, "billing_transient_retries_total")
    assert billing.starts == 1

    dlq, left = await leftovers(topology)
    figures.ledger(result)
    figures.record(cuts=len(CUT_AT), transient_retries=retries, dlq=dlq, left_in_queue=left)
    assert retries >= 1, "no batch was in flight when the database was cut"
    assert result.exact, result
    assert dlq == 0
    assert left == 0


async def test_commit_whose_answer_is_lost(
    dbs: ServiceDatabases,
    topology: Topology,
    company: UUID,
    database_proxy: TcpProxy,
    billing_behind_proxy: ServiceProcess,
    figures: Figures,
) -> None:
    """PostgreSQL commits a batch, and the connection dies before billing hears so."""
    events = many_generated(company, 600)
    proxy, billing = database_proxy, billing_behind_proxy
    async with Publisher(topology) as publisher:
        streaming = asyncio.create_task(publisher.publish(events, window=100))
        await eventually(
            lambda: count_rows(dbs.billing), until=lambda rows: rows >= 50, interval=0.005
        )
        # A batch's transaction sends kilobytes (its events' columns); billing's other
        # transactions (outbox relay, webhook deliveries) send a few hundred bytes.
        proxy.cut_after_reply_to(b"COMMIT", after_bytes=4096)
        await asyncio.wait_for(proxy.fired.wait(), timeout=30)
        committed_unheard = await count_rows(dbs.billing)
        await asyncio.sleep(1.0)
        proxy.restore()
        await streaming
    result = await settled_ledger(dbs.billing, [e.event_id for e in events], timeout=60)
    retries = await metric(billing, "billing_transient_retries_total")
    duplicates_seen = await metric(billing, "billing_events_duplicate_total")

    dlq, _ = await queue_counts(topology.billing_dlq_name)
    figures.ledger(result)
    figures.record(
        rows_when_cut=committed_unheard,
        transient_retries=retries,
        found_already_committed=duplicates_seen,
        dlq=dlq,
    )
    # The retried batch found its rows already there: the lost answer was really a commit.
    assert duplicates_seen >= 1
    assert result.exact, result
    assert dlq == 0


TRANSIENT_FAULTS = """
CREATE SEQUENCE injected_faults;
CREATE FUNCTION fail_transiently() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A sequence is not rolled back with the failed transaction: it counts attempts.
    IF nextval('injected_faults') <= 3 THEN
        RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure';
    ELSIF currval('injected_faults') <= 6 THEN
        RAISE EXCEPTION 'injected' USING ERRCODE = 'deadlock_detected';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER fail_transiently BEFORE INSERT ON question_generation_usage
    FOR EACH STATEMENT EXECUTE FUNCTION fail_transiently();
"""


async def test_serialization_failures_and_deadlocks_are_retried_not_dead_lettered(
    dbs: ServiceDatabases, prefix: str, company: UUID, figures: Figures
) -> None:
    conn = await asyncpg.connect(dbs.billing)
    try:
        await conn.execute(TRANSIENT_FAULTS)
    finally:
        await conn.close()
    events = many_generated(company, 50)
    # Two failures would dead-letter an event, if a transient error counted as one.
    async with start_stack(
        dbs, prefix, services=("billing",), billing_overrides={"max_failed_attempts": 2}
    ) as stack:
        before = await scrape(stack.billing)
        await publish_all(stack.topology, events)
        result = await settled_ledger(dbs.billing, [e.event_id for e in events], timeout=60)
        after = await scrape(stack.billing)
        dlq, _ = await queue_counts(stack.topology.billing_dlq_name)
        faults = await stack.fetch(dbs.billing, "SELECT last_value FROM injected_faults")

    retries = after["billing_transient_retries_total"] - before["billing_transient_retries_total"]
    failed = sum(v for k, v in after.items() if k.startswith("billing_events_failed_total")) - sum(
        v for k, v in before.items() if k.startswith("billing_events_failed_total")
    )
    figures.ledger(result)
    figures.record(injected=6, transient_retries=retries, failed=failed, dlq=dlq)
    assert faults[0]["last_value"] > 6  # every injected fault was hit
    assert retries >= 6
    assert failed == 0
    assert dlq == 0
    assert result.exact, result


async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
    """Billing's counters from `/metrics`, by sample name with labels."""
    text = (await client.get("/metrics")).text
    samples: dict[str, float] = {"billing_transient_retries_total": 0.0}
    for line in text.splitlines():
        if line.startswith("billing_") and " " in line:
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples
