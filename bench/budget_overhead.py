"""What the budget guard adds to a generation, at LLM latency.

The question service (OpenAI writer, its own database and topology, the outbox
relay publishing) behind the lean fake LLM of `generation_at_llm_latency`
(answers after a fixed 300 ms), driven by `wrk` at 100 and at 400 connections,
for two companies in one run, in alternating rounds on one service process:

- `none`: no budget, as every company before budgets existed;
- `budget`: a monthly limit far above what the run spends (learnt from a
  `BudgetChanged` published to the service's queue, as billing publishes it),
  so every request reserves its worst case before the LLM call and settles it
  with the generation.

"Added" is the latency `wrk` saw minus the LLM's 300 ms (medians over rounds).
Bars: p99 added with a budget under 43 ms, and at most 10% more than without.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from bench import harness
from bench.generation_at_llm_latency import Load, service_at_latency
from bench.generation_endpoint import DESCRIPTION
from bench.harness import Profile, Result
from contracts.events import BudgetChanged
from tests.support.broker import publish_events
from tests.support.waiting import eventually

LATENCY = 0.3
BAR_P99_ADDED_MS = 43.0
BAR_BUDGET_COST = 1.10  # added time with a budget / without
CONNECTIONS = (100, 400)
VARIANTS = ("none", "budget")


async def _limit_known(dsn: str, company: uuid.UUID) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM budget_limits WHERE company_id = $1", company
        )
        return bool(found)
    finally:
        await conn.close()


def _added(load: Load) -> tuple[float, float]:
    figures = load.figures()
    return figures["p50_added_ms"], figures["p99_added_ms"]


async def run(profile: Profile) -> Result:
    companies = {"none": uuid.uuid4(), "budget": uuid.uuid4()}
    bodies = {
        variant: {
            "draftJobId": str(uuid.uuid4()),
            "jobDescription": DESCRIPTION,
            "numberOfQuestions": 10,
        }
        for variant in VARIANTS
    }
    loads: dict[tuple[int, str], list[Load]] = {}
    async with service_at_latency(LATENCY) as service:
        await publish_events(
            service.topology,
            BudgetChanged(
                event_id=uuid.uuid4(),
                occurred_at=datetime.now(UTC),
                company_id=companies["budget"],
                revision=1,
                monthly_limit=Decimal("1000000"),
                thresholds=[],
            ),
        )
        await eventually(lambda: _limit_known(service.dsn, companies["budget"]), timeout=30)

        async def measure(connections: int, variant: str, seconds: float) -> Load:
            return await service.load(
                companies[variant], bodies[variant], connections=connections, seconds=seconds
            )

        seconds = max(profile.http_seconds, LATENCY * 4)
        for connections in CONNECTIONS:
            for variant in VARIANTS:  # warm up: connections open, code paths hot
                await measure(connections, variant, max(profile.warmup_seconds, 1.0))
            for round_ in range(profile.rounds):
                order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    load = await measure(connections, variant, seconds)
                    loads.setdefault((connections, variant), []).append(load)
    return _result(loads, profile)


def _result(loads: dict[tuple[int, str], list[Load]], profile: Profile) -> Result:
    figures: dict[str, Any] = {}
    checks: dict[str, bool] = {}
    for connections in CONNECTIONS:
        medians = {}
        for variant in VARIANTS:
            runs = loads[(connections, variant)]
            p50 = harness.median([_added(load)[0] for load in runs])
            p99 = harness.median([_added(load)[1] for load in runs])
            rps = harness.median([load.rps for load in runs])
            errors = sum(load.errors for load in runs)
            cpu = harness.median([load.cpu_ms for load in runs])
            medians[variant] = p99
            figures[f"c{connections}_{variant}"] = {
                "rps": round(rps, 1),
                "p50_added_ms": round(p50, 1),
                "p99_added_ms": round(p99, 1),
                "errors": errors,
                "cpu_ms_per_generation": round(cpu, 2),
            }
        cost = medians["budget"] / medians["none"] if medians["none"] > 0 else float("inf")
        figures[f"c{connections}_budget_over_none_p99"] = round(cost, 3)
        checks[f"{connections} connections: p99 added with a budget < {BAR_P99_ADDED_MS:g} ms"] = (
            medians["budget"] < BAR_P99_ADDED_MS
        )
        checks[f"{connections} connections: budget p99 added <= {BAR_BUDGET_COST:g}x none"] = (
            cost <= BAR_BUDGET_COST
        )
    c100 = figures["c100_budget_over_none_p99"]
    result = Result(
        name="budget_overhead",
        ours=figures["c100_budget"]["p99_added_ms"],
        baseline=figures["c100_none"]["p99_added_ms"],
        unit="ms p99 added",
        ratio=c100,
        bar=f"p99 added < {BAR_P99_ADDED_MS:g} ms with a budget, <= {BAR_BUDGET_COST:g}x none",
        passed=all(checks.values()),
        details={**figures, "rounds": profile.rounds, "seconds": profile.http_seconds},
    )
    result.notes.extend(f"missed: {name}" for name, ok in checks.items() if not ok)
    return result
