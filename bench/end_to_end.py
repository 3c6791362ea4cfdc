"""4. End-to-end latency: from a generation's 200 to its usage row, at a steady 200 req/s.

The question service and the billing worker run as processes of their own,
each with its own database, on one topology. An open-loop client (a process
of its own) sends 200 requests per second and notes the wall-clock time at
which each 200 arrived, with its `generationId`. Billing's
`question_generation_usage.recorded_at` is `clock_timestamp()` when the row is
inserted (its transaction commits a few milliseconds later); both clocks are
this machine's. Latency = recorded_at - time of the 200.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import asyncpg

from bench import harness
from bench.generation_endpoint import DESCRIPTION, PATH
from bench.harness import Profile, Result
from bench.load import percentile

RATE = 200.0
BAR_P99_MS = 250.0


async def usage_times(dsn: str, expected: int, *, timeout: float = 60.0) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await conn.fetch(
                "SELECT event_id, extract(epoch FROM recorded_at)::float8 AS at"
                " FROM question_generation_usage"
            )
            if len(rows) >= expected or time.monotonic() > deadline:
                return {str(row["event_id"]): float(row["at"]) for row in rows}
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def run(profile: Profile) -> Result:
    company = uuid.uuid4()
    body = json.dumps(
        {"draftJobId": str(uuid.uuid4()), "jobDescription": DESCRIPTION, "numberOfQuestions": 10}
    )
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {harness.token(company)}",
    }
    async with (
        harness.temp_database("question_gen") as questions_dsn,
        harness.temp_database("billing") as billing_dsn,
        harness.temp_topology() as topology,
        harness.service("billing", billing_dsn, topology),
        harness.service("question_gen", questions_dsn, topology) as questions_url,
    ):
        spec = harness.LOG_DIR / "steady.json"
        out = harness.LOG_DIR / "steady-out.json"
        spec.write_text(json.dumps({"url": questions_url + PATH, "body": body, "headers": headers}))
        # A short warm-up at the same rate, then the measured run.
        for seconds in (2.0, profile.steady_seconds):
            process = harness.python_module(
                "steady",
                "bench.load",
                "steady",
                str(spec),
                "--rate",
                str(RATE),
                "--seconds",
                str(seconds),
                "--out",
                str(out),
            )
            stats = await process.json(timeout=seconds + 120)
        answers = json.loads(out.read_text())
        ok = {a["id"]: a["at"] for a in answers if a.get("status") == 200}
        recorded = await usage_times(billing_dsn, len(ok) + int(2.0 * RATE))
    latencies = [(recorded[key] - at) * 1000 for key, at in ok.items() if key in recorded]
    missing = len(ok) - len(latencies)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    result = Result(
        name="end_to_end",
        ours=p99,
        baseline=None,
        unit="p99 ms",
        bar=f"p99 < {BAR_P99_MS:.0f} ms at {RATE:.0f} req/s",
        passed=p99 < BAR_P99_MS and missing == 0 and stats["errors"] == 0,
        details={
            "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "max_ms": round(max(latencies), 1) if latencies else None,
            "requests": len(answers),
            "errors": stats["errors"],
            "late_sends": stats["late_sends"],
            "http_p50_ms": round(stats["p50_ms"], 1),
            "http_p99_ms": round(stats["p99_ms"], 1),
            "missing_rows": missing,
            "clock": "recorded_at (insert time) - client time of the 200",
        },
    )
    if missing:
        result.notes.append(f"{missing} generations had no usage row within the wait")
    return result
