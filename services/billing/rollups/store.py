"""The rollups' SQL: a batch's deltas written, and every rollup recomputed from the rows.

Functions take a connection and never commit: the ledger's batch writes its
deltas in its own transaction, after its rows, so a reader sees both or
neither. One statement per rollup, its rows in key order, the rollups always
in the order of `apply` (see rules.py on deadlocks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from services.billing.rollups.rules import Amounts, Deltas, Line, Span, deltas, sorted_items
from services.servicekit.db import Connection

# What every rollup sums, as unnest() columns from $n on and as "t.x + EXCLUDED.x" updates.
SUMS = (
    "generations",
    "question_count",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)
SUM_TYPES = ("bigint", "bigint", "numeric", "bigint", "bigint", "bigint")


def _added(prefix: str = "") -> str:
    return ",\n    ".join(
        f"{prefix}{name} = t.{prefix}{name} + EXCLUDED.{prefix}{name}" for name in SUMS
    )


def _unnest(types: Sequence[str]) -> str:
    return ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types, start=1))


SPAN = """first_used_at = LEAST(t.first_used_at, EXCLUDED.first_used_at),
    last_used_at = GREATEST(t.last_used_at, EXCLUDED.last_used_at)"""

# Per company and day: all rows, and the part held as drafts.
ADD_DAYS = f"""
INSERT INTO rollup_days AS t
SELECT * FROM unnest({_unnest(("uuid", "date", *SUM_TYPES, *SUM_TYPES))})
ON CONFLICT (company_id, day) DO UPDATE SET
    {_added()},
    {_added("draft_")}
"""

# Per company and billing period: all rows, drafts, late.
ADD_PERIODS = f"""
INSERT INTO rollup_periods AS t
SELECT * FROM unnest({_unnest(("uuid", "text", *SUM_TYPES, *SUM_TYPES, *SUM_TYPES[:3]))})
ON CONFLICT (company_id, period) DO UPDATE SET
    {_added()},
    {_added("draft_")},
    late_generations = t.late_generations + EXCLUDED.late_generations,
    late_question_count = t.late_question_count + EXCLUDED.late_question_count,
    late_cost = t.late_cost + EXCLUDED.late_cost
"""

# Per job, all time.
ADD_JOBS = f"""
INSERT INTO rollup_jobs AS t
SELECT * FROM unnest({_unnest(("uuid", "uuid", *SUM_TYPES, "timestamptz", "timestamptz"))})
ON CONFLICT (company_id, job_id) DO UPDATE SET
    {_added()},
    {SPAN}
"""

# Per job and day.
ADD_JOB_DAYS = f"""
INSERT INTO rollup_job_days AS t
SELECT * FROM unnest({_unnest(("uuid", "uuid", "date", *SUM_TYPES, "timestamptz", "timestamptz"))})
ON CONFLICT (company_id, job_id, day) DO UPDATE SET
    {_added()},
    {SPAN}
"""

# Per job and billing period.
ADD_JOB_PERIODS = f"""
INSERT INTO rollup_job_periods AS t
SELECT * FROM unnest({_unnest(("uuid", "text", "uuid", *SUM_TYPES))})
ON CONFLICT (company_id, period, job_id) DO UPDATE SET
    {_added()}
"""

# Per open draft.
ADD_DRAFTS = f"""
INSERT INTO rollup_drafts AS t
SELECT * FROM unnest({_unnest(("uuid", "text", *SUM_TYPES, "timestamptz", "timestamptz"))})
ON CONFLICT (company_id, draft_job_id) DO UPDATE SET
    {_added()},
    {SPAN}
"""

# Drafts reconciled: every row of theirs is now on a job.
DROP_DRAFTS = """
DELETE FROM rollup_drafts
WHERE (company_id, draft_job_id) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))
"""


def _columns(amounts: Sequence[Amounts]) -> list[list[Any]]:
    return [
        [a.generations for a in amounts],
        [a.question_count for a in amounts],
        [a.cost for a in amounts],
        [a.prompt_tokens for a in amounts],
        [a.completion_tokens for a in amounts],
        [a.total_tokens for a in amounts],
    ]


def _keys(keys: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[key[i] for key in keys] for i in range(width)]


def _spans(spans: Sequence[Span]) -> list[list[Any]]:
    return [
        *_columns([span.amounts for span in spans]),
        [span.first for span in spans],
        [span.last for span in spans],
    ]


async def keep(
    conn: Connection,
    inserted: Sequence[Line],
    moved: Sequence[Line],
    reconciled: Iterable[tuple[UUID, str]],
) -> None:
    """The rollups of a batch: its rows inserted, its draft rows moved, its drafts reconciled."""
    await apply(conn, deltas(inserted, moved, reconciled))


async def apply(conn: Connection, deltas: Deltas) -> None:
    """Write a batch's deltas: one statement per rollup, rollups and keys in a fixed order."""
    if deltas.days:
        days = sorted_items(deltas.days)
        splits = [split for _, split in days]
        await conn.execute(
            ADD_DAYS,
            *_keys([key for key, _ in days], 2),
            *_columns([s.total for s in splits]),
            *_columns([s.draft for s in splits]),
        )
    if deltas.periods:
        periods = sorted_items(deltas.periods)
        splits = [split for _, split in periods]
        await conn.execute(
            ADD_PERIODS,
            *_keys([key for key, _ in periods], 2),
            *_columns([s.total for s in splits]),
            *_columns([s.draft for s in splits]),
            *_columns([s.late for s in splits])[:3],
        )
    if deltas.jobs:
        jobs = sorted_items(deltas.jobs)
        await conn.execute(
            ADD_JOBS, *_keys([key for key, _ in jobs], 2), *_spans([span for _, span in jobs])
        )
    if deltas.job_days:
        job_days = sorted_items(deltas.job_days)
        await conn.execute(
            ADD_JOB_DAYS,
            *_keys([key for key, _ in job_days], 3),
            *_spans([span for _, span in job_days]),
        )
    if deltas.job_periods:
        job_periods = sorted_items(deltas.job_periods)
        await conn.execute(
            ADD_JOB_PERIODS,
            *_keys([key for key, _ in job_periods], 3),
            *_columns([amounts for _, amounts in job_periods]),
        )
    if deltas.drafts:
        drafts = sorted_items(deltas.drafts)
        await conn.execute(
            ADD_DRAFTS, *_keys([key for key, _ in drafts], 2), *_spans([span for _, span in drafts])
        )
    if deltas.reconciled:
        reconciled = sorted(deltas.reconciled)
        await conn.execute(DROP_DRAFTS, *_keys(reconciled, 2))


# ---------------------------------------------------------------------------
# Rebuild: every rollup recomputed from the usage rows of some companies ($1).
# ---------------------------------------------------------------------------

ROW_SUMS = """count(*), COALESCE(sum(question_count), 0), COALESCE(sum(cost), 0),
    COALESCE(sum(prompt_tokens), 0), COALESCE(sum(completion_tokens), 0),
    COALESCE(sum(total_tokens), 0)"""


def _filtered_sums(condition: str, names: Sequence[str] = SUMS) -> str:
    parts = {
        "generations": f"count(*) FILTER (WHERE {condition})",
        **{
            name: f"COALESCE(sum({name}) FILTER (WHERE {condition}), 0)"
            for name in SUMS
            if name != "generations"
        },
    }
    return ", ".join(parts[name] for name in names)


DAY = "(created_at AT TIME ZONE 'UTC')::date"
OF_COMPANIES = "company_id = ANY($1::uuid[])"

# The usage rows of the companies being rebuilt, read once (the rollups read them six times).
STAGE_ROWS = f"""
CREATE TEMP TABLE rebuilt_rows ON COMMIT DROP AS
SELECT company_id, job_id, draft_job_id, created_at, period, late, question_count, cost,
    prompt_tokens, completion_tokens, total_tokens
FROM question_generation_usage WHERE {OF_COMPANIES}
"""


@dataclass(frozen=True)
class Rollup:
    """A rollup table and the query that computes it from the staged usage rows."""

    table: str
    expected: str


ROLLUPS = (
    Rollup(
        "rollup_days",
        f"""SELECT company_id, {DAY}, {ROW_SUMS}, {_filtered_sums("draft_job_id IS NOT NULL")}
        FROM rebuilt_rows GROUP BY 1, 2""",
    ),
    Rollup(
        "rollup_periods",
        f"""SELECT company_id, period, {ROW_SUMS}, {_filtered_sums("draft_job_id IS NOT NULL")},
            {_filtered_sums("late", SUMS[:3])}
        FROM rebuilt_rows GROUP BY 1, 2""",
    ),
    Rollup(
        "rollup_jobs",
        f"""SELECT company_id, job_id, {ROW_SUMS}, min(created_at), max(created_at)
        FROM rebuilt_rows WHERE job_id IS NOT NULL GROUP BY 1, 2""",
    ),
    Rollup(
        "rollup_job_days",
        f"""SELECT company_id, job_id, {DAY}, {ROW_SUMS}, min(created_at), max(created_at)
        FROM rebuilt_rows WHERE job_id IS NOT NULL GROUP BY 1, 2, 3""",
    ),
    Rollup(
        "rollup_job_periods",
        f"""SELECT company_id, period, job_id, {ROW_SUMS}
        FROM rebuilt_rows WHERE job_id IS NOT NULL GROUP BY 1, 2, 3""",
    ),
    Rollup(
        "rollup_drafts",
        f"""SELECT company_id, draft_job_id, {ROW_SUMS}, min(created_at), max(created_at)
        FROM rebuilt_rows WHERE draft_job_id IS NOT NULL GROUP BY 1, 2""",
    ),
)

# Writers of the rollups wait while a group of companies is recomputed; readers do not.
LOCK_ROLLUPS = f"LOCK TABLE {', '.join(r.table for r in ROLLUPS)} IN EXCLUSIVE MODE"

# Every company with usage, and how many rows it has, to cut the work into transactions.
COMPANIES = """
SELECT company_id, count(*) AS rows FROM question_generation_usage GROUP BY 1 ORDER BY 1
"""
# Companies with rollup rows but no usage rows at all (only a broken rollup has them).
ORPHANS = " UNION ".join(f"SELECT company_id FROM {r.table}" for r in ROLLUPS)
ORPHAN_COMPANIES = f"""
SELECT company_id FROM ({ORPHANS}) AS r
WHERE NOT EXISTS (SELECT 1 FROM question_generation_usage u WHERE u.company_id = r.company_id)
"""


@dataclass(frozen=True)
class Difference:
    """A rollup's rows that did not match the usage rows, as found (before the fix)."""

    table: str
    missing: int  # expected rows absent or different in the rollup
    unexpected: int  # rollup rows absent or different in what the rows add up to
    examples: list[dict[str, Any]]


async def rebuild(conn: Connection, companies: Sequence[Any]) -> list[Difference]:
    """Recompute every rollup of these companies, fix what differs; report what did.

    Takes the rollups' EXCLUSIVE lock first (inside the caller's transaction):
    a batch that already wrote its deltas commits before it, later batches
    wait for the caller's commit, so the rows read here and the rollups agree.
    """
    await conn.execute(LOCK_ROLLUPS)
    await conn.execute(STAGE_ROWS, list(companies))
    await conn.execute("ANALYZE rebuilt_rows")
    differences = []
    for rollup in ROLLUPS:
        await conn.execute(f"CREATE TEMP TABLE expected (LIKE {rollup.table}) ON COMMIT DROP")
        await conn.execute(f"INSERT INTO expected {rollup.expected}")
        actual = f"SELECT * FROM {rollup.table} WHERE {OF_COMPANIES}"
        missing = await conn.fetch(f"SELECT * FROM expected EXCEPT {actual}", list(companies))
        unexpected = await conn.fetch(f"{actual} EXCEPT SELECT * FROM expected", list(companies))
        if missing or unexpected:
            differences.append(
                Difference(
                    rollup.table,
                    len(missing),
                    len(unexpected),
                    [{"expected": dict(row)} for row in missing[:3]]
                    + [{"found": dict(row)} for row in unexpected[:3]],
                )
            )
            await conn.execute(f"DELETE FROM {rollup.table} WHERE {OF_COMPANIES}", list(companies))
            await conn.execute(f"INSERT INTO {rollup.table} SELECT * FROM expected")
        await conn.execute("DROP TABLE expected")
    await conn.execute("DROP TABLE rebuilt_rows")
    return differences
