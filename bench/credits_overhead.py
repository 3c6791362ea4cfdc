"""`credits_overhead`, billing's half: throughput with every row drawing from credits, against none.

Benchmark 1's drain (N `QuestionsGenerated` preloaded into a fresh quorum queue,
one `python -m services.billing`, timed from its consumer's registration to N
committed rows), twice per round on fresh databases:

- ours: every company of the events (the publisher's 50) is in `credit_only` with
  three grants (priorities 1 and 5, one expiring, one not, one promotional), so
  each usage row draws in burn-down order, every batch writes its draws, the
  grants, the balances, credits applied and a `CreditsChanged` per company (which
  the same process's outbox relay then publishes);
- baseline: the same events, no credits (every company in mode `none`).

Rounds alternate which side goes first; medians are compared. The balance
identity is checked after each credited drain: what was drawn equals what was billed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from bench import harness
from bench.billing_throughput import CONSUMING, preload, wait_for_acks, wait_for_rows
from bench.harness import Profile, Result, median
from bench.publisher import tenants_of
from services.billing.credits import handlers
from services.billing.credits.handlers import GrantOrder

BAR = 0.9
COMPANIES = 50  # the publisher's default


async def give_credits(dsn: str, seed: int) -> None:
    """Three grants for each company the publisher will use, and `credit_only`."""
    now = datetime.now(UTC)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        for company in tenants_of(random.Random(seed), COMPANIES):
            async with pool.acquire() as conn:
                for priority, expires, kind in (
                    (1, now + timedelta(days=30), "promotional"),
                    (5, now + timedelta(days=365), "purchased"),
                    (5, None, "purchased"),
                ):
                    order = GrantOrder(
                        company_id=company,
                        amount=Decimal("40.0000"),  # the three cover a drain of 50,000
                        kind=kind,
                        priority=priority,
                        effective_at=now - timedelta(days=1),
                        expires_at=expires,
                        reason="benchmark",
                        created_by=None,
                    )
                    await handlers.grant_credits(conn, order, now)
                await handlers.set_mode(conn, company, "credit_only", None, now)
    finally:
        await pool.close()


async def drain(events: int, seed: int, *, credits: bool) -> tuple[float, bool]:
    """Events per second, and whether every cost billed was drawn exactly (credited side)."""
    async with harness.temp_database("billing") as dsn, harness.temp_topology() as topology:
        if credits:
            await give_credits(dsn, seed)
        await preload(topology, events, seed=seed)
        process, base_url = harness.start_service("billing", dsn, topology)
        try:
            started = await process.logged_at(CONSUMING, timeout=60)
            finished = await wait_for_rows(dsn, events)
            await wait_for_acks([base_url], events)
        finally:
            await process.stop()
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT sum(cost) FROM question_generation_usage) AS billed,"
                " (SELECT COALESCE(sum(amount), 0) FROM credit_entries WHERE kind = 'draw')"
                " AS drawn"
            )
            assert row is not None
            billed, drawn = row["billed"], row["drawn"]
        finally:
            await conn.close()
    exact = billed == drawn if credits else drawn == 0
    return events / (finished - started), exact


async def run(profile: Profile) -> Result:
    credited: list[float] = []
    plain: list[float] = []
    exact = True
    for round_ in range(profile.rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for credits in order:
            rate, ok = await drain(profile.events, round_ + 1, credits=credits)
            (credited if credits else plain).append(rate)
            exact = exact and ok
    ratio = median(credited) / median(plain)
    result = Result(
        name="credits_overhead",
        ours=median(credited),
        baseline=median(plain),
        unit="events/s",
        ratio=ratio,
        bar=f"billing with draws / without >= {BAR}",
        passed=ratio >= BAR and exact,
        details={
            "events": profile.events,
            "rounds": profile.rounds,
            "with_rounds": [round(rate) for rate in credited],
            "without_rounds": [round(rate) for rate in plain],
            "draws_exact": exact,
        },
    )
    if not exact:
        result.notes.append("the draws did not add up to what was billed")
    return result
