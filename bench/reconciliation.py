"""5. Reconciliation at scale: a JobCreated attaching 10 drafts, 10 thousand vs 1 million rows.

Two billing databases, one holding 10 thousand other usage rows and one a
million (a third of them drafts, spread over a thousand companies), analyzed.
In each, repeatedly: 10 draft rows of a new draft are committed, then one
`JobCreated` naming that draft is recorded through `ledger.record.record_events`
in its own transaction (advisory lock, known job, attach) and timed to its
commit. The two databases take turns; the medians are compared. The plan of
`store.ATTACH_DRAFTS` (generic, as a prepared statement runs it after a few
executions) must use the `usage_drafts` index.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import harness
from bench.harness import Profile, Result, median, percentile
from contracts.events import QuestionsGenerated
from services.billing.ledger import store
from services.billing.ledger.record import record_events
from services.billing.ledger.rules import Pricing
from tests.support.events import generated, job_created

BAR = 1.5
SMALL_ROWS = 10_000
DRAFT_ROWS = 10

# Other companies' (and this company's other) usage: 1/3 drafts, 2/3 on jobs.
FILL = """
INSERT INTO question_generation_usage (
    event_id, company_id, job_id, draft_job_id, prompt_tokens, completion_tokens,
    total_tokens, question_count, cost, model_used, created_at
)
SELECT gen_random_uuid(),
       ('00000000-0000-4000-8000-' || lpad(to_hex(i % 1000), 12, '0'))::uuid,
       CASE WHEN i % 3 = 0 THEN NULL ELSE gen_random_uuid() END,
       CASE WHEN i % 3 = 0 THEN 'draft-' || (i / 3) ELSE NULL END,
       512, 734, 1246, 10, 0.1, 'gpt-4o', now() - make_interval(secs => i)
FROM generate_series(1, $1::int) AS i
"""


def drafts(company: uuid.UUID, draft: str) -> list[QuestionsGenerated]:
    at = datetime.now(UTC)
    return [
        generated(company, draft=draft, at=at, prompt_tokens=512, completion_tokens=734)
        for _ in range(DRAFT_ROWS)
    ]


async def fill(dsn: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(FILL, rows)
        await conn.execute("VACUUM ANALYZE question_generation_usage")
    finally:
        await conn.close()


async def plan(conn: asyncpg.Connection) -> str:
    """EXPLAIN of ATTACH_DRAFTS as a generic plan (what a prepared statement settles on)."""
    company = str(uuid.UUID("00000000-0000-4000-8000-000000000007"))
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE attach_plan AS {store.ATTACH_DRAFTS}")
        try:
            rows = await conn.fetch(
                "EXPLAIN (FORMAT JSON) EXECUTE attach_plan("
                f"ARRAY['{company}']::uuid[], ARRAY['{uuid.uuid4()}']::uuid[], "
                "ARRAY['draft-7']::text[])"
            )
        finally:
            await conn.execute("DEALLOCATE attach_plan")
    return str(rows[0][0])


def index_names(plan_json: str) -> set[str]:
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.add(str(node["Index Name"]))
        for child in node.get("Plans", []):
            walk(child)

    for entry in json.loads(plan_json):
        walk(entry["Plan"])
    return found


async def reconcile_once(conn: asyncpg.Connection, pricing: Pricing) -> float:
    company, draft = uuid.uuid4(), str(uuid.uuid4())
    async with conn.transaction():
        await record_events(conn, drafts(company, draft), default=pricing)
    job = job_created(company, draft=draft)
    started = time.perf_counter()
    async with conn.transaction():
        outcome = await record_events(conn, [job], default=pricing)
    elapsed = time.perf_counter() - started
    attached = outcome[job.event_id]
    assert getattr(attached, "rows", None) == DRAFT_ROWS, attached
    return elapsed


async def run(profile: Profile) -> Result:
    pricing = Pricing()
    repetitions = 15 if profile.quick else 60
    async with (
        harness.temp_database("billing") as small_dsn,
        harness.temp_database("billing") as large_dsn,
    ):
        await fill(small_dsn, SMALL_ROWS)
        await fill(large_dsn, profile.large_rows)
        small = await asyncpg.connect(small_dsn)
        large = await asyncpg.connect(large_dsn)
        try:
            large_plan = await plan(large)
            for conn in (small, large):  # warm the statement caches
                for _ in range(6):
                    await reconcile_once(conn, pricing)
            timings: dict[str, list[float]] = {"small": [], "large": []}
            for _ in range(repetitions):
                timings["small"].append(await reconcile_once(small, pricing))
                timings["large"].append(await reconcile_once(large, pricing))
        finally:
            await small.close()
            await large.close()
    indexes = index_names(large_plan)
    uses_index = "usage_drafts" in indexes
    small_ms, large_ms = median(timings["small"]) * 1000, median(timings["large"]) * 1000
    ratio = large_ms / small_ms
    result = Result(
        name="reconciliation",
        ours=large_ms,
        baseline=small_ms,
        unit=f"ms ({profile.large_rows:,} vs {SMALL_ROWS:,} rows)",
        ratio=ratio,
        bar=f"large/small <= {BAR}, plan uses usage_drafts",
        passed=ratio <= BAR and uses_index,
        details={
            "draft_rows": DRAFT_ROWS,
            "repetitions": repetitions,
            "small_p99_ms": round(percentile(timings["small"], 99) * 1000, 2),
            "large_p99_ms": round(percentile(timings["large"], 99) * 1000, 2),
            "plan_indexes": sorted(indexes),
        },
    )
    if not uses_index:
        result.notes.append(f"ATTACH_DRAFTS plan does not use usage_drafts: {large_plan}")
    return result
