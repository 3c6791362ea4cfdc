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
            data = await process.json(timeout=seconds + 60)
            return LoadResult(
                data["requests"],
                data["errors"],
                data["seconds"],
                data["p50_ms"],
                data["p99_ms"],
                "asyncpg",
            )

        ours_runs, raw_runs = await harness.alternate(profile, ours, baseline)
        jobs = await harness.count_rows(dsn, "jobs")
    mine, theirs = harness.summary(ours_runs), harness.summary(raw_runs)
    ratio = mine["rps"] / theirs["rps"]
    result = Result(
        name="job_creation",
        ours=mine["rps"],
        baseline=theirs["rps"],
        unit="req/s",
        ratio=ratio,
        bar=f"ours/raw insert >= {BAR}",
        passed=ratio >= BAR and mine["errors"] == 0,
        details={
            "concurrency": CONCURRENCY,
            "pool_size": pool_size,
            "ours_p50_ms": round(mine["p50_ms"], 2),
            "ours_p99_ms": round(mine["p99_ms"], 2),
            "raw_p50_ms": round(theirs["p50_ms"], 2),
            "raw_p99_ms": round(theirs["p99_ms"], 2),
            "errors": mine["errors"],
            "jobs_written": jobs,
            "rounds": profile.rounds,
            "ours_rounds": [round(r.rps, 1) for r in ours_runs],
            "raw_rounds": [round(r.rps, 1) for r in raw_runs],
        },
    )
    if mine["errors"]:
        result.notes.append(f"{mine['errors']:.0f} requests failed")
    return result
