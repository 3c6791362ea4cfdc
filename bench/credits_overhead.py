"""`credits_overhead`: what prepaid credits cost, on both sides of the queue.

Billing's half: throughput with every row drawing from credits, against none.
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

The question service's half: generation at LLM latency, as `budget_overhead`
measures it (the lean fake LLM answering after 300 ms, `wrk` at 100
connections, alternating rounds on one service process), for two companies:
one with no credits, one in `credit_only` with a grant far above what the run
spends (learnt from a `CreditsChanged` published to the service's queue, as
billing publishes it), so every request reserves its worst case against the
credits before the LLM call, and its generation settles the reservation and
counts as not yet billed (no billing runs: every generation stays counted, as
when billing lags). Bar: p99 added with credits <= 1.1x without.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from bench import harness
from bench.billing_throughput import CONSUMING, preload, wait_for_acks, wait_for_rows
from bench.generation_at_llm_latency import Load, service_at_latency
from bench.generation_endpoint import DESCRIPTION
from bench.harness import Profile, Result, median
from bench.publisher import tenants_of
from contracts.events import BudgetChanged, CreditLeft, CreditsChanged
from services.billing.credits import handlers
from services.billing.credits.handlers import GrantOrder
from tests.support.broker import publish_events
from tests.support.waiting import eventually

BAR = 0.9
COMPANIES = 50  # the publisher's default
LATENCY = 0.3
CONNECTIONS = 100
BAR_P99_RATIO = 1.10  # p99 added with credit_only / without
# `budget` (a limit far above the run's spend) for comparison: the same reservation
# machinery, held against a budget instead of credits.
VARIANTS = ("none", "credit_only", "budget")


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


async def billing_side(profile: Profile) -> dict[str, Any]:
    credited: list[float] = []
    plain: list[float] = []
    exact = True
    for round_ in range(profile.rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for credits in order:
            rate, ok = await drain(profile.events, round_ + 1, credits=credits)
            (credited if credits else plain).append(rate)
            exact = exact and ok
    return {
        "with": median(credited),
        "without": median(plain),
        "ratio": median(credited) / median(plain),
        "with_rounds": [round(rate) for rate in credited],
        "without_rounds": [round(rate) for rate in plain],
        "draws_exact": exact,
    }


def account(company: uuid.UUID) -> CreditsChanged:
    """A credit_only account with far more than the run spends, as billing publishes it."""
    now = datetime.now(UTC)
    left = CreditLeft(
        grant_id=uuid.uuid4(),
        remaining=Decimal("1000000.0000"),
        priority=10,
        effective_at=now - timedelta(days=1),
        expires_at=None,
    )
    return CreditsChanged(
        event_id=uuid.uuid4(),
        occurred_at=now,
        company_id=company,
        revision=1,
        mode="credit_only",
        balance=left.remaining,
        low_balance_threshold=None,
        grants=[left],
    )


async def _known(dsn: str, companies: dict[str, uuid.UUID]) -> bool:
    """Whether the service has applied the account and the limit."""
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetchval(
            "SELECT (SELECT count(*) FROM credit_accounts WHERE company_id = $1)"
            " + (SELECT count(*) FROM budget_limits WHERE company_id = $2)",
            companies["credit_only"],
            companies["budget"],
        )
        return bool(found == 2)
    finally:
        await conn.close()


async def generation_side(profile: Profile) -> dict[str, Any]:
    companies = {variant: uuid.uuid4() for variant in VARIANTS}
    body = {"draftJobId": str(uuid.uuid4()), "jobDescription": DESCRIPTION, "numberOfQuestions": 10}
    loads: dict[str, list[Load]] = {}
    async with service_at_latency(LATENCY) as service:
        limit = BudgetChanged(
            event_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            company_id=companies["budget"],
            revision=1,
            monthly_limit=Decimal("1000000"),
            thresholds=[],
        )
        await publish_events(service.topology, account(companies["credit_only"]), limit)
        await eventually(lambda: _known(service.dsn, companies), timeout=30)

        async def measure(variant: str, seconds: float) -> Load:
            return await service.load(
                companies[variant], body, connections=CONNECTIONS, seconds=seconds
            )

        for variant in VARIANTS:  # warm up: connections open, code paths hot
            await measure(variant, max(profile.warmup_seconds, 1.0))
        for round_ in range(profile.rounds):
            # Each variant first in turn.
            shift = round_ % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                loads.setdefault(variant, []).append(
                    await measure(variant, max(profile.http_seconds, LATENCY * 4))
                )
    figures: dict[str, Any] = {}
    for variant in VARIANTS:
        runs = loads[variant]
        figures[variant] = {
            "rps": round(median([load.rps for load in runs]), 1),
            "p50_added_ms": round(median([load.figures()["p50_added_ms"] for load in runs]), 1),
            "p99_added_ms": round(median([load.figures()["p99_added_ms"] for load in runs]), 1),
            "errors": sum(load.errors for load in runs),
            "cpu_ms_per_generation": round(median([load.cpu_ms for load in runs]), 2),
        }
    none, credited = figures["none"]["p99_added_ms"], figures["credit_only"]["p99_added_ms"]
    figures["p99_ratio"] = round(credited / none, 3) if none > 0 else float("inf")
    budget = figures["budget"]["p99_added_ms"]
    figures["p99_ratio_to_budget"] = round(credited / budget, 3) if budget > 0 else float("inf")
    return figures


async def run(profile: Profile) -> Result:
    billing = await billing_side(profile)
    generation = await generation_side(profile)
    billing_ok = billing["ratio"] >= BAR and billing["draws_exact"]
    generation_ok = generation["p99_ratio"] <= BAR_P99_RATIO
    result = Result(
        name="credits_overhead",
        ours=billing["with"],
        baseline=billing["without"],
        unit="events/s",
        ratio=billing["ratio"],
        bar=(
            f"billing with draws / without >= {BAR}; generation p99 added with credit_only"
            f" / without <= {BAR_P99_RATIO:g}"
        ),
        passed=billing_ok and generation_ok,
        details={
            "events": profile.events,
            "rounds": profile.rounds,
            "billing": billing,
            "generation": {**generation, "connections": CONNECTIONS},
        },
    )
    if not billing["draws_exact"]:
        result.notes.append("the draws did not add up to what was billed")
    if not billing_ok:
        result.notes.append("missed: billing with draws / without")
    if not generation_ok:
        result.notes.append("missed: generation p99 added with credit_only / without")
    return result
