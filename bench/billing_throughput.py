"""1. Billing throughput: events per second from a full quorum queue to committed rows.

The same N `QuestionsGenerated` events are published (by a process of their own,
persistent, with confirms, to the real exchange) into two fresh billing queues
before anyone consumes. Then, one at a time:

- ours: the billing worker (`python -m services.billing`) drains its queue; done
  when the N usage rows are committed (the harness sees them in the database);
- baseline: a bare aio-pika consumer in its own process acks the N messages.

For both, the clock starts when the consumer is registered on the queue
(billing logs it; the bare consumer reports it), so process start-up is not
measured. Rounds alternate
which side goes first; the median of the rounds is reported.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
import httpx

from bench import harness
from bench.harness import Profile, Result, median
from contracts.topology import Topology
from services.billing.config import Settings as BillingSettings

BAR = 0.6
# Billing logs this once its consumer is registered on the queue.
CONSUMING = "broker connected"
GOAL = 0.9


@dataclass(frozen=True)
class Drain:
    events: int
    messages: int
    seconds: float
    rows: int
    distinct_rows: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def exactly_once(self) -> bool:
        return self.rows == self.events == self.distinct_rows


async def preload(
    topology: Topology, events: int, *, duplicates: int = 0, seed: int = 1, calls: bool = False
) -> float:
    """Publish the events (with `calls`, each with its billed call) into the topology's
    billing queue; returns the publish rate."""
    process = harness.python_module(
        "publisher",
        "bench.publisher",
        "--url",
        harness.RABBITMQ_URL,
        "--prefix",
        topology.prefix,
        "--count",
        str(events),
        "--duplicates",
        str(duplicates),
        "--seed",
        str(seed),
        *(["--calls"] if calls else []),
    )
    result = await process.json(timeout=300)
    return float(result["published"]) / float(result["seconds"])


async def wait_for_rows(
    dsn: str, expected: int, *, timeout: float = 300.0, table: str = "question_generation_usage"
) -> float:
    """Wall-clock time at which `expected` rows (usage rows unless told) are first seen."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            count = await conn.fetchval(f"SELECT count(*) FROM {table}")
            if count >= expected:
                return time.time()
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    raise TimeoutError(f"{expected} rows not committed within {timeout}s")


async def consumed(base_urls: list[str]) -> float:
    """Messages the workers acknowledged after commit, from their own /metrics."""
    total = 0.0
    async with httpx.AsyncClient(timeout=5.0) as client:
        for base_url in base_urls:
            text = (await client.get(f"{base_url}/metrics")).text
            for line in text.splitlines():
                if line.startswith("billing_events_consumed_total{"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


async def wait_for_acks(base_urls: list[str], messages: int, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while await consumed(base_urls) < messages:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{messages} messages not all acknowledged within {timeout}s")
        await asyncio.sleep(0.1)


async def billing_drain(
    events: int, *, workers: int = 1, duplicates: int = 0, seed: int = 1, calls: bool = False
) -> Drain:
    """Preload a fresh queue, start `workers` billing processes, time the drain to rows.

    The clock starts when the first worker has started consuming (its "broker
    connected" log line, written right after the consumer is registered). With
    `calls`, every generation's call is in the queue beside it, and the drain ends
    when the calls are all kept too.
    """
    messages = events * (2 if calls else 1) + duplicates
    async with harness.temp_database("billing") as dsn, harness.temp_topology() as topology:
        await preload(topology, events, duplicates=duplicates, seed=seed, calls=calls)
        started_workers = [harness.start_service("billing", dsn, topology) for _ in range(workers)]
        try:
            starts = [
                await process.logged_at(CONSUMING, timeout=60) for process, _ in started_workers
            ]
            finished = await wait_for_rows(dsn, events)
            if calls:
                finished = max(finished, await wait_for_rows(dsn, events, table="llm_calls"))
            # Duplicates still in flight must change nothing: wait for every ack.
            await wait_for_acks([url for _, url in started_workers], messages)
        finally:
            for process, _ in started_workers:
                await process.stop()
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetchval("SELECT count(*) FROM question_generation_usage")
            distinct = await conn.fetchval(
                "SELECT count(DISTINCT event_id) FROM question_generation_usage"
            )
        finally:
            await conn.close()
    return Drain(events, messages, finished - min(starts), rows, distinct)


async def bare_drain(events: int, *, prefetch: int, seed: int = 1) -> Drain:
    """The same events drained by the bare consumer, timed from its consumer registration."""
    async with harness.temp_topology() as topology:
        await preload(topology, events, seed=seed)
        process = harness.python_module(
            "bare_consumer",
            "bench.bare_consumer",
            "--url",
            harness.RABBITMQ_URL,
            "--queue",
            topology.billing_queue_name,
            "--count",
            str(events),
            "--prefetch",
            str(prefetch),
        )
        result = await process.json(timeout=300)
    seconds = float(result["finished_at"]) - float(result["started_at"])
    return Drain(events, events, seconds, events, events)


async def run(profile: Profile) -> Result:
    prefetch = BillingSettings().prefetch_count
    ours: list[float] = []
    bare: list[float] = []
    exactly_once = True
    for round_ in range(profile.rounds):
        order = ("bare", "ours") if round_ % 2 == 0 else ("ours", "bare")
        for side in order:
            if side == "bare":
                drained = await bare_drain(profile.events, prefetch=prefetch, seed=round_ + 1)
                bare.append(drained.rate)
            else:
                drained = await billing_drain(profile.events, seed=round_ + 1)
                ours.append(drained.rate)
                exactly_once = exactly_once and drained.exactly_once
    ours_rate, bare_rate = median(ours), median(bare)
    ratio = ours_rate / bare_rate
    result = Result(
        name="billing_throughput",
        ours=ours_rate,
        baseline=bare_rate,
        unit="events/s",
        ratio=ratio,
        bar=f"billing/bare >= {BAR} (goal {GOAL})",
        passed=ratio >= BAR and exactly_once,
        details={
            "events": profile.events,
            "rounds": profile.rounds,
            "prefetch": prefetch,
            "ours_rounds": ours,
            "bare_rounds": bare,
            "exactly_once": exactly_once,
        },
    )
    if not exactly_once:
        result.notes.append("usage rows did not match the events one to one")
    return result
