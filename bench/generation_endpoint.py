"""2. Generation endpoint: `POST /api/ai/generate-questions` against a bare FastAPI endpoint.

Ours: the question service (`python -m services.question_gen`) with the offline
writer (a zero-latency LLM), its own database and topology; every request
writes a generation row and an outbox event in one transaction, and the relay
publishes it. Baseline: `bench.bare_app`, one FastAPI endpoint that reads the
same JSON body, served with the same uvicorn settings (uvloop, httptools, one
process). Both driven by the same load generator at concurrency 64.
"""

from __future__ import annotations

import uuid

from bench import harness
from bench.harness import Profile, Result

BAR = 0.4
CONCURRENCY = 64
PATH = "/api/ai/generate-questions"
DESCRIPTION = (
    "Senior Python engineer to build event-driven billing: RabbitMQ, PostgreSQL, FastAPI, "
    "asyncio, observability and on-call for a small product team."
)


async def run(profile: Profile) -> Result:
    company = uuid.uuid4()
    headers = {"Authorization": f"Bearer {harness.token(company)}"}
    body = {"draftJobId": str(uuid.uuid4()), "jobDescription": DESCRIPTION, "numberOfQuestions": 10}
    port = harness.free_port()
    bare = harness.python_module("bare_app", "bench.bare_app", "--port", str(port))
    bare_url = f"http://127.0.0.1:{port}"
    try:
        await harness.wait_ready(bare_url, bare, 60)
        async with (
            harness.temp_database("question_gen") as dsn,
            harness.temp_topology() as topology,
            harness.service("question_gen", dsn, topology) as ours_url,
        ):

            async def ours(seconds: float) -> harness.LoadResult:
                return await harness.http_load(
                    ours_url + PATH, body, headers, concurrency=CONCURRENCY, seconds=seconds
                )

            async def baseline(seconds: float) -> harness.LoadResult:
                return await harness.http_load(
                    bare_url + PATH, body, headers, concurrency=CONCURRENCY, seconds=seconds
                )

            ours_runs, bare_runs = await harness.alternate(profile, ours, baseline)
            generations = await harness.count_rows(dsn, "generations")
    finally:
        await bare.stop()
    mine, theirs = harness.summary(ours_runs), harness.summary(bare_runs)
    ratio = mine["rps"] / theirs["rps"]
    result = Result(
        name="generation_endpoint",
        ours=mine["rps"],
        baseline=theirs["rps"],
        unit="req/s",
        ratio=ratio,
        bar=f"ours/bare >= {BAR}",
        passed=ratio >= BAR and mine["errors"] == 0,
        details={
            "concurrency": CONCURRENCY,
            "ours_p50_ms": round(mine["p50_ms"], 2),
            "ours_p99_ms": round(mine["p99_ms"], 2),
            "bare_p50_ms": round(theirs["p50_ms"], 2),
            "bare_p99_ms": round(theirs["p99_ms"], 2),
            "errors": mine["errors"],
            "generations_written": generations,
            "rounds": profile.rounds,
            "generator": ours_runs[0].generator,
            "ours_rounds": [round(r.rps, 1) for r in ours_runs],
            "bare_rounds": [round(r.rps, 1) for r in bare_runs],
        },
    )
    if mine["errors"]:
        result.notes.append(f"{mine['errors']:.0f} requests failed")
    return result
