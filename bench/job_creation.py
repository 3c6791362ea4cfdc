"""3. Job creation: `POST /api/jobs` against raw asyncpg single-row insert-and-commit.

Ours: the jobs service (`python -m services.jobs`) driven over HTTP at
concurrency 64; each request writes the job and its JobCreated outbox event in
one transaction, and the relay publishes the event. Baseline: `bench.raw_insert`,
a process of its own running 64 concurrent tasks that each insert one job row
and commit, over a pool as large as the service's.
"""

from __future__ import annotations

import uuid

from bench import harness
from bench.harness import LoadResult, Profile, Result
from services.jobs.config import Settings as JobsSettings

BAR = 0.5
CONCURRENCY = 64


async def run(profile: Profile) -> Result:
    company = uuid.uuid4()
    headers = {"Authorization": f"Bearer {harness.token(company)}"}
    body = {
        "title": "Senior Python engineer",
        "description": "Event-driven billing on RabbitMQ and PostgreSQL.",
        "createdBy": "recruiter@example.com",
    }
    pool_size = JobsSettings().db_pool_max_size
    async with (
        harness.temp_database("jobs") as dsn,
        harness.temp_database("jobs") as raw_dsn,
        harness.temp_topology() as topology,
        harness.service("jobs", dsn, topology) as ours_url,
    ):

        async def ours(seconds: float) -> LoadResult:
            return await harness.http_load(
                ours_url + "/api/jobs", body, headers, concurrency=CONCURRENCY, seconds=seconds
            )

        async def baseline(seconds: float) -> LoadResult:
            process = harness.python_module(
                "raw_insert",
                "bench.raw_insert",
                "--dsn",
                raw_dsn,
                "--concurrency",
                str(CONCURRENCY),
                "--pool-size",
                str(pool_size),
                "--seconds",
                str(seconds),
            )
            return LoadResult.of(await process.json(timeout=seconds + 60), "asyncpg")

        ours_runs, raw_runs = await harness.alternate(profile, ours, baseline)
        jobs = await harness.count_rows(dsn, "jobs")
    return harness.throughput_result(
        "job_creation",
        ours_runs,
        raw_runs,
        baseline_name="raw",
        bar=BAR,
        concurrency=CONCURRENCY,
        pool_size=pool_size,
        jobs_written=jobs,
    )
