"""`provider_reconciliation`: a 90-day reconciliation run for 20 models against the fake usage API.

One billing database holding 90 days of calls of 20 models (10 calls a day and model,
each of them counted by billing's own `record_calls`), and the fake of the provider's
usage API (`tests/support/fake_usage.py`, under uvicorn on loopback, in this process)
reporting the same figures. Timed: `run.reconcile` over the 90 days, end to end (the
lock, 3 pages of 31 days read over HTTP, our side of each page's days, 1,800 rows
written, the run), median of the rounds; for the record, over the first 30 days (1
page), and the provider's 90 days of pages alone (read and parsed, nothing compared).
Memory: the peak traced by `tracemalloc` during a 30-day run and during a 90-day run
(the fake's pages included, in the same process): a run holds one page at a time, so
the peak must not grow with the days.

Bars: 90 days < 5 s; peak of 90 days / peak of 30 days <= 1.5.
"""

from __future__ import annotations

import time
import tracemalloc
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
from pydantic import SecretStr

from bench import harness
from bench.harness import Profile, Result, median
from services.billing.costs.calls import record_calls
from services.billing.reconciliation.provider import OpenAiUsage
from services.billing.reconciliation.run import RunOrder, ordered, reconcile
from services.billing.reconciliation.store import Run
from tests.support.events import llm_call
from tests.support.fake_usage import ADMIN_KEY, FakeUsageApi, Usage, running_fake_usage

DAYS = 90
MODELS = 20
CALLS_PER_DAY = 10
BAR_SECONDS = 5.0
BAR_MEMORY = 1.5
LAST_DAY = date(2026, 3, 31)
FIRST_DAY = LAST_DAY - timedelta(days=DAYS - 1)
# Three days after the last: every day settled, as a run in April reads March.
NOW = datetime(2026, 4, 3, 12, tzinfo=UTC)


async def seed(dsn: str, fake: FakeUsageApi) -> int:
    """The ledger's calls, and the provider's report of exactly them; how many calls."""
    company = uuid.uuid4()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    total = 0
    try:
        for offset in range(DAYS):
            day = FIRST_DAY + timedelta(days=offset)
            calls = []
            for model_number in range(MODELS):
                model = f"bench-model-{model_number:02d}"
                for n in range(CALLS_PER_DAY):
                    at = datetime(day.year, day.month, day.day, n, tzinfo=UTC)
                    prompt = 1_000 + 37 * n + model_number
                    calls.append(
                        llm_call(
                            company,
                            model=model,
                            at=at,
                            prompt_tokens=prompt,
                            cached_prompt_tokens=n * 10,
                            completion_tokens=300 + n,
                        )
                    )
                    fake.add(day, model, Usage(1, prompt, n * 10, 300 + n))
            async with pool.acquire() as conn, conn.transaction():
                await record_calls(conn, calls)
            total += len(calls)
        async with pool.acquire() as conn:
            await conn.execute("ANALYZE llm_calls")
    finally:
        await pool.close()
    return total


async def one_run(pool: asyncpg.Pool, fake: FakeUsageApi, days: int) -> tuple[float, Run]:
    usage = OpenAiUsage(base_url=fake.url, admin_key=SecretStr(ADMIN_KEY))
    order = RunOrder(FIRST_DAY, FIRST_DAY + timedelta(days=days - 1), "request", "bench")
    started = time.perf_counter()
    run = await reconcile(pool, usage, ordered(order), clock=lambda: NOW, tolerance=Decimal(1))
    seconds = time.perf_counter() - started
    assert run is not None
    assert run.succeeded, run.reason
    assert run.summary.counts["matched"] == days * MODELS, run.summary.counts
    return seconds, run


async def pages_only(fake: FakeUsageApi, days: int) -> float:
    """Seconds to read the provider's pages alone (what of a run is the fake's)."""
    usage = OpenAiUsage(base_url=fake.url, admin_key=SecretStr(ADMIN_KEY))
    started = time.perf_counter()
    async for _ in usage.pages(FIRST_DAY, FIRST_DAY + timedelta(days=days - 1)):
        pass
    return time.perf_counter() - started


async def traced_peak(pool: asyncpg.Pool, fake: FakeUsageApi, days: int) -> int:
    """Bytes at the peak of one run's allocations (this process: the fake's pages too)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        await one_run(pool, fake, days)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


async def run(profile: Profile) -> Result:
    rounds = max(profile.rounds, 3)
    async with harness.temp_database("billing") as dsn, running_fake_usage() as fake:
        calls = await seed(dsn, fake)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            await one_run(pool, fake, DAYS)  # warm: connections, statements, the fake
            ninety: list[float] = []
            thirty: list[float] = []
            reading: list[float] = []
            pages = 0
            for _ in range(rounds):
                seconds, done = await one_run(pool, fake, DAYS)
                ninety.append(seconds)
                pages = done.pages
                thirty.append((await one_run(pool, fake, 30))[0])
                reading.append(await pages_only(fake, DAYS))
            peak_30 = await traced_peak(pool, fake, 30)
            peak_90 = await traced_peak(pool, fake, DAYS)
        finally:
            await pool.close()
    seconds_90 = median(ninety)
    memory_ratio = peak_90 / peak_30
    passed = seconds_90 < BAR_SECONDS and memory_ratio <= BAR_MEMORY
    return Result(
        name="provider_reconciliation",
        ours=seconds_90,
        baseline=median(thirty),
        unit="s",
        ratio=seconds_90 / median(thirty),
        bar=f"90 days x {MODELS} models < {BAR_SECONDS:g} s; peak 90 d / 30 d <= {BAR_MEMORY}",
        passed=passed,
        details={
            "calls": calls,
            "day_models": DAYS * MODELS,
            "pages_90_days": pages,
            "rounds": rounds,
            "seconds_90_days": [round(s, 3) for s in ninety],
            "seconds_30_days": [round(s, 3) for s in thirty],
            "pages_alone_seconds_90_days": round(median(reading), 3),
            "peak_kib_30_days": round(peak_30 / 1024),
            "peak_kib_90_days": round(peak_90 / 1024),
            "peak_ratio": round(memory_ratio, 2),
        },
    )
