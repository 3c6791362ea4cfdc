"""Margin reads at scale: `GET /api/billing/admin/margin` over 1,000,000 LLM calls.

The ledger: 10,000 companies, 100 LLM calls each, all in November 2025 (the month
read), over five models (one of them with no price: its calls are unpriced); 90%
of the calls billed, each with its usage row (10 questions, `0.1000`), the rest
failed, timed out or cancelled. It is loaded by bulk SQL into a fresh database
migrated with the project's migrations, the calls priced in SQL at the shipped
prices (`services/billing/costs/openai_prices.json`, loaded by the project's own
`book.load_shipped`) with the rule of `costs/rules.py`; then the margin rollups
are built by the project's own `python -m services.billing.costs.check --fix`,
so the reads see what a deployment over that ledger sees. `--quick` loads a tenth.

Measured against `python -m services.billing` over HTTP, one request at a time: the
month by company (first page of 100), by model, by day, a range cutting through
the month (10 to 20 November) by company, and the five pages after the first.
For the record, the same month by company computed from the calls and usage rows
themselves (what the rollups spare), a few times.

    python -m bench.margin_reads load NAME     load a ledger into database NAME and keep it
    python -m bench.margin_reads measure NAME  measure the margin reads over it
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import uvloop

from bench import harness
from bench.harness import Profile, Result, percentile
from services.billing.costs.book import load_shipped, read_shipped

MONTH = {"from": "2025-11-01", "to": "2025-11-30"}
CUT = {"from": "2025-11-10", "to": "2025-11-20"}
CHECK_MODULE = "services.billing.costs.check"
OPERATOR = uuid.UUID("6f1c2a3e-0000-4000-8000-0000000ad111")

BARS = {"month_by_company_p99_ms": 50.0, "month_by_model_p99_ms": 50.0}


@dataclass(frozen=True)
class CallsSize:
    companies: int
    calls_per_company: int

    @property
    def calls(self) -> int:
        return self.companies * self.calls_per_company

    @classmethod
    def of(cls, quick: bool) -> CallsSize:
        return cls(1_000, 100) if quick else cls(10_000, 100)


# Companies $1..$2, $3 calls each, in November 2025 (UTC). Models by call number: four
# priced ones (a dated snapshot among them) and one the price book does not know.
CALLS = """
INSERT INTO llm_calls (
    event_id, company_id, model, model_stem, outcome, generation_id, prompt_tokens,
    cached_prompt_tokens, completion_tokens, reasoning_tokens, usage_source, occurred_at,
    provider_cost, model_price_id
)
SELECT g.event_id, g.company_id, g.model, g.stem, g.outcome,
       CASE WHEN g.outcome = 'billed' THEN g.generation_id END,
       g.pt, g.cached, g.ct, g.reasoning, 'provider', g.at,
       round(((g.pt - g.cached) * p.input_per_1m + g.cached * p.cached_input_per_1m
              + g.ct * p.output_per_1m) / 1000000, 8),
       p.model_price_id
FROM (
    SELECT gen_random_uuid() AS event_id, gen_random_uuid() AS generation_id,
           md5('company/' || c)::uuid AS company_id,
           (ARRAY['gpt-4o', 'gpt-4o-mini-2024-07-18', 'gpt-4.1', 'o4-mini', 'acme-llm-1'])
               [1 + (i % 5)] AS model,
           (ARRAY['gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'o4-mini', 'acme-llm-1'])
               [1 + (i % 5)] AS stem,
           CASE WHEN i % 10 = 3 THEN (ARRAY['failed', 'timeout', 'cancelled'])[1 + (c % 3)]
                ELSE 'billed' END AS outcome,
           pt, (pt * random() * 0.5)::int AS cached, ct, (ct * random() * 0.3)::int AS reasoning,
           timestamptz '2025-11-01 00:00:00+00' + random() * interval '30 days' AS at
    FROM generate_series($1::int, $2::int) AS c
    CROSS JOIN generate_series(1, $3::int) AS i
    CROSS JOIN LATERAL (
        SELECT 300 + (random() * 900)::int + (i * 0) AS pt, 200 + (random() * 800)::int AS ct
    ) AS tokens
) AS g
LEFT JOIN model_prices p ON p.model = g.stem
"""

# Each billed call's generation: 10 questions at the default price, on its job.
USAGE = """
INSERT INTO question_generation_usage (
    event_id, company_id, job_id, prompt_tokens, completion_tokens, total_tokens,
    question_count, cost, model_used, created_at, period
)
SELECT generation_id, company_id,
       md5(company_id::text || '/job/' || (hashtext(event_id::text) & 15))::uuid,
       prompt_tokens, completion_tokens, prompt_tokens + completion_tokens, 10, 0.1000, model,
       occurred_at, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM')
FROM llm_calls WHERE outcome = 'billed' AND company_id = ANY($1::uuid[])
"""

# What the rollups spare: the month by company, first page, from the rows themselves.
SCAN_BY_COMPANY = """
SELECT company_id, sum(revenue), sum(calls), sum(provider_cost) FROM (
    SELECT company_id, cost AS revenue, 0 AS calls, 0::numeric AS provider_cost
    FROM question_generation_usage
    WHERE created_at >= '2025-11-01T00:00:00Z' AND created_at < '2025-12-01T00:00:00Z'
    UNION ALL
    SELECT company_id, 0, 1, COALESCE(provider_cost, 0) FROM llm_calls
    WHERE occurred_at >= '2025-11-01T00:00:00Z' AND occurred_at < '2025-12-01T00:00:00Z'
) AS parts GROUP BY company_id ORDER BY company_id LIMIT 101
"""


async def _run(dsn: str, statement: str, *args: Any) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET work_mem = '256MB'")
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def load(dsn: str, size: CallsSize) -> float:
    """Fill a migrated, empty billing database with the calls and their usage rows."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await load_shipped(conn, read_shipped())
    finally:
        await conn.close()
    half = size.companies // 2
    await asyncio.gather(  # two connections, one per core
        _run(dsn, CALLS, 1, half, size.calls_per_company),
        _run(dsn, CALLS, half + 1, size.companies, size.calls_per_company),
    )
    conn = await asyncpg.connect(dsn)
    try:
        companies = [
            row[0] for row in await conn.fetch("SELECT DISTINCT company_id FROM llm_calls")
        ]
    finally:
        await conn.close()
    await asyncio.gather(
        _run(dsn, USAGE, companies[0::2]),
        _run(dsn, USAGE, companies[1::2]),
    )
    await _run(dsn, "VACUUM (ANALYZE) llm_calls, question_generation_usage")
    return time.perf_counter() - started


async def build_rollups(dsn: str) -> float:
    """The project's check command, fixing: the margin rollups from the rows."""
    started = time.perf_counter()
    process = harness.Process(
        "margin-check",
        [sys.executable, "-m", CHECK_MODULE, "--fix"],
        harness.service_env(BILLING_DATABASE_URL=dsn),
    )
    await process.output(timeout=1800)
    await _run(dsn, "VACUUM (ANALYZE) margin_days, margin_periods, margin_model_days")
    return time.perf_counter() - started


# ---------------------------------------------------------------- measuring


async def timed(client: httpx.AsyncClient, params: dict[str, str], samples: int) -> dict[str, Any]:
    """`samples` sequential GETs of the margin after 3 to warm up: latency and the answer."""
    for _ in range(3):
        response = await client.get("/api/billing/admin/margin", params=params)
    times: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        response = await client.get("/api/billing/admin/margin", params=params)
        _ = response.content
        times.append((time.perf_counter() - started) * 1000)
    body = response.json() if response.status_code == 200 else {}
    return {
        "p50_ms": round(percentile(times, 50), 2),
        "p99_ms": round(percentile(times, 99), 2),
        "status": response.status_code,
        "groups": len(body.get("groups", [])),
        "bytes": len(response.content),
    }


async def pages_after(client: httpx.AsyncClient, pages: int) -> dict[str, Any]:
    times: list[float] = []
    cursor: str | None = None
    status = 0
    for _ in range(pages + 1):
        params = {**MONTH, "groupBy": "company", **({"cursor": cursor} if cursor else {})}
        started = time.perf_counter()
        response = await client.get("/api/billing/admin/margin", params=params)
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
        if status != 200:
            break
        cursor = response.json().get("nextCursor")
    return {
        "p50_ms": round(percentile(times, 50), 2),
        "p99_ms": round(percentile(times, 99), 2),
        "status": status,
    }


async def scan(dsn: str, samples: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            await conn.fetch(SCAN_BY_COMPANY)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return {"p50_ms": round(percentile(times, 50), 2), "samples": samples}


async def measure(base_url: str, dsn: str, samples: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {harness.operator_token(OPERATOR)}"}
    figures: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600) as client:
        figures["month_by_company"] = await timed(client, {**MONTH, "groupBy": "company"}, samples)
        figures["month_by_model"] = await timed(client, {**MONTH, "groupBy": "model"}, samples)
        figures["month_by_day"] = await timed(client, {**MONTH, "groupBy": "day"}, samples)
        figures["cut_by_company"] = await timed(client, {**CUT, "groupBy": "company"}, samples)
        figures["company_pages"] = await pages_after(client, 5)
    figures["scan_by_company"] = await scan(dsn, 3)
    return figures


@contextlib.asynccontextmanager
async def billing_service(dsn: str) -> AsyncIterator[str]:
    async with harness.temp_topology() as topology:
        process, base_url = harness.start_service("billing", dsn, topology)
        try:
            await harness.wait_ready(base_url, process, 60)
            yield base_url
        finally:
            await process.stop()


def verdict(figures: dict[str, Any]) -> dict[str, bool]:
    def under(key: str, bar: str) -> bool:
        return bool(figures[key]["status"] == 200 and figures[key]["p99_ms"] < BARS[bar])

    return {
        "month_by_company": under("month_by_company", "month_by_company_p99_ms"),
        "month_by_model": under("month_by_model", "month_by_model_p99_ms"),
    }


async def run(profile: Profile) -> Result:
    size = CallsSize.of(profile.quick)
    samples = 30 if profile.quick else 200
    async with harness.temp_database("billing") as dsn:
        loaded = await load(dsn, size)
        rebuilt = await build_rollups(dsn)
        async with billing_service(dsn) as base_url:
            figures = await measure(base_url, dsn, samples)
    passed = verdict(figures)
    result = Result(
        name="margin_reads",
        ours=figures["month_by_company"]["p99_ms"],
        baseline=figures["scan_by_company"]["p50_ms"],
        unit="ms (month by company p99; baseline: a scan's p50)",
        bar="p99 < 50 ms for a month by company (first page) and by model",
        passed=all(passed.values()),
        details={
            "calls": size.calls,
            "companies": size.companies,
            "load_seconds": round(loaded, 1),
            "rollups_seconds": round(rebuilt, 1),
            "samples": samples,
            **figures,
        },
    )
    for name, good in passed.items():
        if not good:
            result.notes.append(f"{name} missed its bar: {figures[name]}")
    return result


# ---------------------------------------------------------------- development


async def _load_named(name: str, quick: bool) -> None:
    from services.migrate import MIGRATION_SETS
    from services.servicekit.migrations import migrate
    from tests.support.databases import drop_databases

    await drop_databases([name], admin_dsn=harness.ADMIN_DSN)
    dsn = harness.dsn_of(name)
    await migrate(dsn, MIGRATION_SETS["billing"])
    size = CallsSize.of(quick)
    print(f"loading {size.calls:,} calls into {name} ...", flush=True)
    print(f"loaded in {await load(dsn, size):.1f}s", flush=True)
    print(f"rollups in {await build_rollups(dsn):.1f}s", flush=True)


async def _measure_named(name: str, samples: int) -> None:
    dsn = harness.dsn_of(name)
    async with billing_service(dsn) as base_url:
        figures = await measure(base_url, dsn, samples)
    print(json.dumps(figures, indent=2))
    print(json.dumps(verdict(figures)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.margin_reads", description=__doc__)
    parser.add_argument("action", choices=["load", "measure"])
    parser.add_argument("database")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args(argv)
    if args.action == "load":
        uvloop.run(_load_named(args.database, args.quick))
    else:
        uvloop.run(_measure_named(args.database, args.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
