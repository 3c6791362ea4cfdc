"""8. Closing a month for 10,000 companies, against the bare aggregate of its rows.

A billing database is loaded with two months of usage for 10,000 companies
(20 generations a month each by default, over 4 jobs and a draft, a tenth of
them late), its rollups computed as the ledger keeps them, and analyzed. Then,
in alternating rounds on copies of it:

- ours: `statements.handlers.close_period` (lock, mark closed, freeze every
  company's statement and lines from the rollups in one statement), timed to
  its commit;
- baseline: the two bare `GROUP BY`s over the month's usage rows (per company,
  per company and job) written into unlogged tables: what closing from the
  rows alone would cost at the least.

    python -m bench.close_period [--companies N] [--per-company N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import asyncpg

from bench import harness
from bench.harness import Profile, Result, median
from services.billing.rollups import store as rollups
from services.billing.statements.handlers import close_period
from services.billing.statements.rules import Period
from tests.support.databases import drop_databases

BAR = 1.5
COMPANIES = 10_000
MONTH = Period(2026, 3)

# A month ($4) of usage: each company `$2` generations over 4 jobs and one draft.
LOAD = """
INSERT INTO question_generation_usage (
    event_id, company_id, job_id, draft_job_id, prompt_tokens, completion_tokens,
    total_tokens, question_count, cost, model_used, created_at, period, late
)
SELECT gen_random_uuid(), company_id,
       CASE WHEN n % 5 = 0 THEN NULL
            ELSE ('00000000-0000-4000-9000-' || lpad(to_hex(c * 4 + n % 4), 12, '0'))::uuid END,
       CASE WHEN n % 5 = 0 THEN 'draft-' || c END,
       512, 734, 1246, n % 10 + 1, ((n % 10 + 1) * 0.01)::numeric(10, 4), 'gpt-4o',
       $3::timestamptz + make_interval(mins => c % 40000 + n), $4, n % 10 = 0
FROM generate_series(1, $1::int) AS c
CROSS JOIN LATERAL (
    SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(c), 12, '0'))::uuid AS company_id
) AS company
CROSS JOIN generate_series(1, $2::int) AS n
"""

# The baseline: what any close has to compute and write, bare.
BARE = """
CREATE UNLOGGED TABLE bare_statements AS
SELECT company_id, count(*) AS generations, sum(question_count) AS question_count,
       sum(cost) AS cost
FROM question_generation_usage WHERE period = $1 GROUP BY company_id;
CREATE UNLOGGED TABLE bare_lines AS
SELECT company_id, job_id, sum(question_count) AS question_count, sum(cost) AS cost
FROM question_generation_usage WHERE period = $1 AND job_id IS NOT NULL
GROUP BY company_id, job_id;
"""


async def load(dsn: str, companies: int, per_company: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for month in (MONTH.previous(), MONTH):
            await conn.execute(LOAD, companies, per_company, month.start, str(month))
        async with conn.transaction():
            everyone = [row[0] for row in await conn.fetch(rollups.COMPANIES)]
            await rollups.rebuild(conn, everyone)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def close_once(dsn: str) -> tuple[float, int, int]:
    """Seconds to close the month; the statements and lines it froze."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        started = time.perf_counter()
        closed = await close_period(pool, MONTH, MONTH.end + timedelta(days=1))
        seconds = time.perf_counter() - started
        lines = await pool.fetchval("SELECT count(*) FROM statement_lines")
        return seconds, closed.statements or 0, lines
    finally:
        await pool.close()


async def bare_once(dsn: str) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        async with conn.transaction():
            for statement in BARE.strip().split(";\n"):
                await conn.execute(statement.replace("$1", f"'{MONTH}'"))
        return time.perf_counter() - started
    finally:
        await conn.close()


async def copy_of(template: str, name: str) -> str:
    admin = await asyncpg.connect(harness.ADMIN_DSN)
    try:
        source = template.rsplit("/", 1)[1].split("?")[0]
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    finally:
        await admin.close()
    return harness.dsn_of(name)


async def measure(companies: int, per_company: int, rounds: int) -> dict[str, Any]:
    ours: list[float] = []
    bare: list[float] = []
    written = lines = 0
    async with harness.temp_database("billing") as template:
        await load(template, companies, per_company)
        for round_ in range(rounds):
            names = [f"{harness.RUN_ID}_close_{round_}_{kind}" for kind in ("ours", "bare")]
            try:
                dsns = [await copy_of(template, name) for name in names]
                # Alternate which goes first, so neither always meets a warmer cache.
                if round_ % 2 == 0:
                    seconds, written, lines = await close_once(dsns[0])
                    ours.append(seconds)
                    bare.append(await bare_once(dsns[1]))
                else:
                    bare.append(await bare_once(dsns[1]))
                    seconds, written, lines = await close_once(dsns[0])
                    ours.append(seconds)
            finally:
                await drop_databases(names, admin_dsn=harness.ADMIN_DSN)
    return {
        "companies": companies,
        "rows_in_month": companies * per_company,
        "statements": written,
        "lines": lines,
        "close_seconds": ours,
        "bare_seconds": bare,
    }


async def run(profile: Profile) -> Result:
    per_company = 5 if profile.quick else 20
    figures = await measure(COMPANIES, per_company, max(profile.rounds, 2))
    ours, bare = median(figures["close_seconds"]), median(figures["bare_seconds"])
    ratio = ours / bare if bare else None
    return Result(
        name="close_period",
        ours=ours,
        baseline=bare,
        unit="s per close",
        bar=f"close of {COMPANIES:,} companies <= {BAR}x the bare aggregate of its rows",
        passed=ratio is not None and ratio <= BAR and figures["statements"] == COMPANIES,
        ratio=ratio,
        details=figures,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--companies", type=int, default=COMPANIES)
    parser.add_argument("--per-company", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    async def go() -> dict[str, Any]:
        try:
            return await measure(args.companies, args.per_company, args.rounds)
        finally:
            await harness.drop_run_databases()

    figures = asyncio.run(go())
    figures["close_median_seconds"] = median(figures["close_seconds"])
    figures["bare_median_seconds"] = median(figures["bare_seconds"])
    figures["ratio"] = figures["close_median_seconds"] / figures["bare_median_seconds"]
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
