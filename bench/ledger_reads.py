"""Ledger reads at scale: the read API over a ledger of 5 million usage rows.

The ledger: 5,000,000 usage rows over 2025; one company holds 1,000,000 of
them (20,000 jobs of 49 rows, each job's usage within a week of its first,
and 2,000 drafts of 10 rows never reconciled), 4,000 other companies hold
1,000 each. It is loaded by bulk SQL (`generate_series`, two connections at
once, the table's indexes dropped during the load and rebuilt after, as the
migrations define them) into a fresh database migrated with the project's
migrations; then the rollups are built by the project's own rebuild command
(`python -m services.billing.rollups.rebuild`), so the reads see exactly what a
deployment over an existing ledger sees. `--quick` loads a tenth of it.

Measured against `python -m services.billing` over HTTP, one request at a time
(the figures are latencies, not throughput): the summary's first page for the
whole year and for a range cutting through months (10 March to 20 April), the
daily series over 365 days, the first usage page and 20 pages after it, and
the CSV export of the large company's year (rows per second, and the growth of
the service's resident memory while it streams).

    python -m bench.ledger_reads load NAME     load a ledger into database NAME and keep it
    python -m bench.ledger_reads measure NAME  measure the read API over it
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvloop

from bench import billing_throughput, harness
from bench.harness import Profile, Result, median, percentile
from contracts.topology import Topology
from tests.support import processes

# The large company, the one every read is made for.
COMPANY = uuid.UUID("6f1c2a3e-0000-4000-8000-00000000c0de")
YEAR_START = "2025-01-01T00:00:00Z"
YEAR_END = "2026-01-01T00:00:00Z"
# A range that cuts through two months.
RANGE_FROM = "2025-03-10T00:00:00Z"
RANGE_TO = "2025-04-20T00:00:00Z"
DAILY_FROM = "2025-01-01"
DAILY_TO = "2025-12-31"
REBUILD_MODULE = "services.billing.rollups.rebuild"
WITHOUT_ROLLUPS = "bench.billing_without_rollups"

BARS = {
    "summary_year_p99_ms": 50.0,
    "summary_range_p99_ms": 100.0,
    "daily_p99_ms": 50.0,
    "csv_rows_per_s": 100_000.0,
    "csv_rss_growth_mb": 50.0,
}


@dataclass(frozen=True)
class LedgerSize:
    """How many rows of whom: the large company's jobs and drafts, and everyone else."""

    jobs: int
    rows_per_job: int
    drafts: int
    rows_per_draft: int
    other_companies: int
    other_rows_per_company: int

    @property
    def company_rows(self) -> int:
        return self.jobs * self.rows_per_job + self.drafts * self.rows_per_draft

    @property
    def rows(self) -> int:
        return self.company_rows + self.other_companies * self.other_rows_per_company

    @classmethod
    def of(cls, quick: bool) -> LedgerSize:
        if quick:
            return cls(2_000, 49, 200, 10, 400, 1_000)
        return cls(20_000, 49, 2_000, 10, 4_000, 1_000)


# Every row: priced at the default price (10 questions cost 0.1000), within 2025 (UTC).
INSERT_ROWS = """
INSERT INTO question_generation_usage (
    event_id, company_id, job_id, draft_job_id, prompt_tokens, completion_tokens,
    total_tokens, question_count, cost, model_used, created_at{extra_columns}
)
SELECT gen_random_uuid(), company_id, job_id, draft_job_id, pt, ct, pt + ct, qc,
       (qc * 0.01)::numeric(10, 4), 'gpt-4o', at{extra_values}
FROM (
    SELECT r.*, 200 + (random() * 800)::int AS pt, 300 + (random() * 900)::int AS ct,
           1 + (random() * 19)::int AS qc
    FROM ({source}) AS r
) AS g
ORDER BY at
"""

# The large company's jobs: each job's rows within a week of its first use.
COMPANY_JOBS = """
SELECT $1::uuid AS company_id, md5($1::text || '/job/' || j)::uuid AS job_id,
       NULL::text AS draft_job_id, s.first + random() * interval '7 days' AS at
FROM generate_series(1, $2::int) AS j
CROSS JOIN LATERAL (
    SELECT timestamptz '2025-01-01 00:00:00+00' + (random() + j * 0) * interval '358 days' AS first
) AS s
CROSS JOIN generate_series(1, $3::int) AS r
"""

# The large company's drafts that never became jobs: each within a day.
COMPANY_DRAFTS = """
SELECT $1::uuid AS company_id, NULL::uuid AS job_id, 'draft-' || d AS draft_job_id,
       s.first + random() * interval '1 day' AS at
FROM generate_series(1, $4::int) AS d
CROSS JOIN LATERAL (
    SELECT timestamptz '2025-01-01 00:00:00+00' + (random() + d * 0) * interval '364 days' AS first
) AS s
CROSS JOIN generate_series(1, $5::int) AS r
"""

# Companies number c in [$6, $7]: jobs of 50 rows each, within a week.
OTHER_COMPANIES = """
SELECT md5('company/' || c)::uuid AS company_id,
       md5('company/' || c || '/job/' || (r / 50))::uuid AS job_id,
       NULL::text AS draft_job_id,
       s.first + random() * interval '7 days' AS at
FROM generate_series($6::int, $7::int) AS c
CROSS JOIN generate_series(0, $8::int - 1) AS r
CROSS JOIN LATERAL (
    SELECT timestamptz '2025-01-01 00:00:00+00'
        + ((hashtext(c || '/' || (r / 50)) & 1048575) / 1048576.0) * interval '358 days' AS first
) AS s
"""

# The table's indexes and constraints, to drop before the load and restore after.
INDEXES = """
SELECT i.indexname, i.indexdef, c.conname, pg_get_constraintdef(c.oid) AS condef
FROM pg_indexes i
LEFT JOIN pg_constraint c ON c.conindid = (quote_ident(i.indexname))::regclass
  AND c.contype IN ('p', 'u')
WHERE i.schemaname = current_schema() AND i.tablename = 'question_generation_usage'
"""


async def _columns(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'question_generation_usage'"
    )
    return {row["column_name"] for row in rows}


def _statement(source: str, columns: set[str]) -> str:
    """The insert, with whatever columns later migrations made required."""
    extra_columns = ""
    extra_values = ""
    if "period" in columns:
        extra_columns += ", period"
        extra_values += ", to_char(at AT TIME ZONE 'UTC', 'YYYY-MM')"
    return INSERT_ROWS.format(source=source, extra_columns=extra_columns, extra_values=extra_values)


async def load(dsn: str, size: LedgerSize) -> float:
    """Fill a migrated, empty billing database with the ledger; returns the seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        columns = await _columns(conn)
        indexes = await conn.fetch(INDEXES)
        for index in indexes:
            if index["conname"]:
                await conn.execute(
                    f"ALTER TABLE question_generation_usage DROP CONSTRAINT {index['conname']}"
                )
            else:
                await conn.execute(f"DROP INDEX {index['indexname']}")
    finally:
        await conn.close()
    half = size.other_companies // 2
    args = (
        COMPANY,
        size.jobs,
        size.rows_per_job,
        size.drafts,
        size.rows_per_draft,
    )
    company_part = f"{COMPANY_JOBS} UNION ALL {COMPANY_DRAFTS} UNION ALL {OTHER_COMPANIES}"
    # The large company and some others on one connection, the rest on the other.
    company_share = max(0, half - size.company_rows // size.other_rows_per_company // 2)
    await asyncio.gather(
        _run(
            dsn,
            _statement(company_part, columns),
            *args,
            1,
            company_share,
            size.other_rows_per_company,
        ),
        _run(  # the other companies alone: their three parameters numbered from $1
            dsn,
            _statement(OTHER_COMPANIES, columns)
            .replace("$6", "$1")
            .replace("$7", "$2")
            .replace("$8", "$3"),
            company_share + 1,
            size.other_companies,
            size.other_rows_per_company,
        ),
    )
    restore = [
        (
            f"ALTER TABLE question_generation_usage ADD CONSTRAINT {index['conname']} "
            f"{index['condef']}"
            if index["conname"]
            else index["indexdef"]
        )
        for index in indexes
    ]
    # Two at a time, one per core.
    await asyncio.gather(_run_all(dsn, restore[0::2]), _run_all(dsn, restore[1::2]))
    await _run(dsn, "VACUUM (ANALYZE) question_generation_usage")
    return time.perf_counter() - started


async def _run(dsn: str, statement: str, *args: Any) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute("SET work_mem = '256MB'")
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def _run_all(dsn: str, statements: list[str]) -> None:
    for statement in statements:
        await _run(dsn, statement)


async def build_rollups(dsn: str) -> float | None:
    """The project's rebuild command over the loaded ledger; None before it exists."""
    try:
        if importlib.util.find_spec(REBUILD_MODULE) is None:
            return None
    except ModuleNotFoundError:
        return None
    started = time.perf_counter()
    process = harness.Process(
        "rebuild",
        [sys.executable, "-m", REBUILD_MODULE],
        harness.service_env(BILLING_DATABASE_URL=dsn),
    )
    await process.output(timeout=1800)
    return time.perf_counter() - started


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    bytes: int
    status: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "bytes": self.bytes,
            "status": self.status,
        }


async def timed_get(
    client: httpx.AsyncClient, path: str, params: dict[str, str], samples: int
) -> Latency:
    """`samples` sequential GETs after 3 to warm up; latency percentiles and the body's size."""
    for _ in range(3):
        response = await client.get(path, params=params)
    times: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        response = await client.get(path, params=params)
        _ = response.content
        times.append((time.perf_counter() - started) * 1000)
    return Latency(
        percentile(times, 50), percentile(times, 99), len(response.content), response.status_code
    )


async def usage_pages(client: httpx.AsyncClient, pages: int) -> Latency:
    """The first usage page and `pages` after it, each timed."""
    times: list[float] = []
    cursor: str | None = None
    size = 0
    status = 0
    for _ in range(pages + 1):
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        started = time.perf_counter()
        response = await client.get("/api/billing/usage", params=params)
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
        if status != 200:
            break
        size = max(size, len(response.content))
        cursor = response.json().get("nextCursor")
        if not cursor:
            break
    return Latency(percentile(times, 50), percentile(times, 99), size, status)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def csv_export(client: httpx.AsyncClient, pid: int) -> dict[str, Any]:
    """The large company's year as CSV: rows per second and the service's memory growth."""
    before = resident_mb(pid)
    peak = before
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident_mb(pid))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    lines = 0
    started = time.perf_counter()
    try:
        async with client.stream(
            "GET", "/api/billing/usage.csv", params={"from": YEAR_START, "to": YEAR_END}
        ) as response:
            status = response.status_code
            async for chunk in response.aiter_bytes():
                lines += chunk.count(b"\n")
    finally:
        seconds = time.perf_counter() - started
        done.set()
        await watcher
    rows = max(0, lines - 1)
    return {
        "status": status,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds) if status == 200 else 0,
        "rss_before_mb": round(before, 1),
        "rss_growth_mb": round(peak - before, 1),
    }


async def measure(base_url: str, pid: int, samples: int, pages: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {harness.token(COMPANY)}"}
    figures: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600) as client:
        year = {"from": YEAR_START, "to": YEAR_END}
        cut = {"from": RANGE_FROM, "to": RANGE_TO}
        figures["summary_year"] = (
            await timed_get(client, "/api/billing/summary", year, samples)
        ).as_dict()
        figures["summary_range"] = (
            await timed_get(client, "/api/billing/summary", cut, samples)
        ).as_dict()
        daily = {"from": DAILY_FROM, "to": DAILY_TO}
        figures["daily"] = (
            await timed_get(client, "/api/billing/usage/daily", daily, samples)
        ).as_dict()
        figures["usage_pages"] = (await usage_pages(client, pages)).as_dict()
        figures["csv"] = await csv_export(client, pid)
    return figures


@contextlib.asynccontextmanager
async def billing_service(dsn: str) -> AsyncIterator[tuple[str, int]]:
    """The billing service over that database: its base URL and process id."""
    async with harness.temp_topology() as topology:
        process, base_url = harness.start_service("billing", dsn, topology)
        try:
            await harness.wait_ready(base_url, process, 60)
            yield base_url, process.pid
        finally:
            await process.stop()


def verdict(figures: dict[str, Any]) -> dict[str, bool]:
    """Which reads met their bars (each answered 200 too)."""

    def under(key: str, value: str, bar: str) -> bool:
        return bool(figures[key]["status"] == 200 and figures[key][value] < BARS[bar])

    return {
        "summary_year": under("summary_year", "p99_ms", "summary_year_p99_ms"),
        "summary_range": under("summary_range", "p99_ms", "summary_range_p99_ms"),
        "daily": under("daily", "p99_ms", "daily_p99_ms"),
        "csv": under("csv", "rss_growth_mb", "csv_rss_growth_mb")
        and figures["csv"]["rows_per_s"] >= BARS["csv_rows_per_s"],
    }


async def run(profile: Profile) -> Result:
    size = LedgerSize.of(profile.quick)
    samples = 30 if profile.quick else 200
    async with harness.temp_database("billing") as dsn:
        loaded = await load(dsn, size)
        rebuilt = await build_rollups(dsn)
        async with billing_service(dsn) as (base_url, pid):
            figures = await measure(base_url, pid, samples, pages=20)
    passed = verdict(figures)
    result = Result(
        name="ledger_reads",
        ours=figures["summary_year"]["p99_ms"],
        baseline=None,
        unit="ms (summary p99)",
        bar="summary p99 < 50 ms (range < 100), daily < 50 ms, CSV >= 100k rows/s, < 50 MB",
        passed=all(passed.values()),
        details={
            "ledger_rows": size.rows,
            "company_rows": size.company_rows,
            "load_seconds": round(loaded, 1),
            "rebuild_seconds": None if rebuilt is None else round(rebuilt, 1),
            "samples": samples,
            **{key: value for key, value in figures.items()},
        },
    )
    for name, good in passed.items():
        if not good:
            result.notes.append(f"{name} missed its bar: {figures[name]}")
    return result


# ---------------------------------------------------------------- what keeping them costs

WRITE_COST_BAR = 0.9


def start_billing(module: str, dsn: str, topology: Topology) -> tuple[harness.Process, str]:
    """`python -m <module>` as the billing service, on a free port."""
    port = harness.free_port()
    variables = processes.service_env(
        "billing",
        database_url=dsn,
        prefix=topology.prefix,
        port=port,
        rabbitmq_url=harness.RABBITMQ_URL,
    )
    process = harness.Process(
        module, [sys.executable, "-m", module], harness.service_env(**variables)
    )
    return process, f"http://127.0.0.1:{port}"


async def drain(module: str, events: int, seed: int) -> float:
    """Benchmark 1's drain (N events preloaded, one worker) by `module`: events per second."""
    async with harness.temp_database("billing") as dsn, harness.temp_topology() as topology:
        await billing_throughput.preload(topology, events, seed=seed)
        process, base_url = start_billing(module, dsn, topology)
        try:
            started = await process.logged_at(billing_throughput.CONSUMING, timeout=60)
            finished = await billing_throughput.wait_for_rows(dsn, events)
            await billing_throughput.wait_for_acks([base_url], events)
        finally:
            await process.stop()
    return events / (finished - started)


async def run_write_cost(profile: Profile) -> Result:
    """Billing's throughput keeping the rollups, against the same without them, same run."""
    kept: list[float] = []
    skipped: list[float] = []
    for round_ in range(profile.rounds):
        order = ("services.billing", WITHOUT_ROLLUPS)
        for module in order if round_ % 2 == 0 else order[::-1]:
            rate = await drain(module, profile.events, seed=round_ + 1)
            (kept if module == "services.billing" else skipped).append(rate)
    ratio = median(kept) / median(skipped)
    return Result(
        name="rollup_write_cost",
        ours=median(kept),
        baseline=median(skipped),
        unit="events/s",
        ratio=ratio,
        bar=f"with rollups / without >= {WRITE_COST_BAR}",
        passed=ratio >= WRITE_COST_BAR,
        details={
            "events": profile.events,
            "rounds": profile.rounds,
            "with_rounds": [round(rate) for rate in kept],
            "without_rounds": [round(rate) for rate in skipped],
        },
    )


# ---------------------------------------------------------------- development


async def _load_named(name: str, quick: bool) -> None:
    from services.migrate import MIGRATION_SETS
    from services.servicekit.migrations import migrate
    from tests.support.databases import drop_databases

    await drop_databases([name], admin_dsn=harness.ADMIN_DSN)
    dsn = harness.dsn_of(name)
    await migrate(dsn, MIGRATION_SETS["billing"])
    size = LedgerSize.of(quick)
    print(f"loading {size.rows:,} rows into {name} ...", flush=True)
    print(f"loaded in {await load(dsn, size):.1f}s", flush=True)
    rebuilt = await build_rollups(dsn)
    print(f"rollups: {'no rebuild command yet' if rebuilt is None else f'{rebuilt:.1f}s'}")


async def _measure_named(name: str, samples: int) -> None:
    import json

    async with billing_service(harness.dsn_of(name)) as (base_url, pid):
        figures = await measure(base_url, pid, samples, pages=20)
    print(json.dumps(figures, indent=2))
    print(json.dumps(verdict(figures)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_reads", description=__doc__)
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
