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
    return harness.throughput_result(
        "generation_endpoint",
        ours_runs,
        bare_runs,
        baseline_name="bare",
        bar=BAR,
        concurrency=CONCURRENCY,
        generations_written=generations,
    )
