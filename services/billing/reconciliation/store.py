"""Reconciliation's SQL: our side of a range of days, the runs and their rows, the run's lock.

Functions take a connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from services.billing.reconciliation.rules import DayModel, Figures, Status, Summary
from services.servicekit.db import Connection

# Advisory lock of reconciliation runs (apart from the ledger's, the book's, the credits').
RUN_LOCK_CLASS = 0x0B11_0009
TRY_RUN_LOCK = "SELECT pg_try_advisory_xact_lock($1::int, 0)"

# Our side of days [$1, $2): per UTC day and model stem, the calls and their tokens. A
# call with no token is one the provider refused with an error status: not a request.
LEDGER_FIGURES = """
SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, model_stem AS model,
    count(*) FILTER (WHERE prompt_tokens > 0 OR completion_tokens > 0) AS requests,
    sum(prompt_tokens) AS input_tokens,
    sum(cached_prompt_tokens) AS cached_input_tokens,
    sum(completion_tokens) AS output_tokens
FROM llm_calls
WHERE occurred_at >= $1 AND occurred_at < $2
GROUP BY 1, 2
"""

# A run's rows, a page of days at a time (its run row comes at the end: deferred key).
INSERT_RESULTS = """
INSERT INTO reconciliation_results (
    run_id, day, model, status, our_requests, our_input_tokens, our_cached_input_tokens,
    our_output_tokens, their_requests, their_input_tokens, their_cached_input_tokens,
    their_output_tokens
)
SELECT $1, * FROM unnest(
    $2::date[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
    $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[]
)
"""

INSERT_RUN = """
INSERT INTO reconciliation_runs (
    run_id, trigger, requested_by, first_day, last_day, as_of, started_at, finished_at, status,
    reason, pages, matched, drift, provisional, missing_ours, missing_theirs, max_drift_percent
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
"""

RUN_COLUMNS = """run_id, trigger, requested_by, first_day, last_day, as_of, started_at,
    finished_at, status, reason, pages, matched, drift, provisional, missing_ours,
    missing_theirs, max_drift_percent"""

RESULT_COLUMNS = """r.run_id, r.day, r.model, r.status, r.our_requests, r.our_input_tokens,
    r.our_cached_input_tokens, r.our_output_tokens, r.their_requests, r.their_input_tokens,
    r.their_cached_input_tokens, r.their_output_tokens"""

# Each day of [$1, $2] as the latest succeeded run that read it found it.
LATEST_RESULTS = f"""
WITH days AS (SELECT d::date AS day FROM generate_series($1::date, $2::date, '1 day') AS d),
latest AS (
    SELECT days.day, (
        SELECT u.run_id FROM reconciliation_runs u
        WHERE u.status = 'succeeded' AND days.day BETWEEN u.first_day AND u.last_day
        ORDER BY u.id DESC LIMIT 1
    ) AS run_id
    FROM days
)
SELECT {RESULT_COLUMNS}
FROM latest JOIN reconciliation_results r ON r.run_id = latest.run_id AND r.day = latest.day
ORDER BY r.day, r.model
"""

# One run's rows.
RUN_RESULTS = f"""
SELECT {RESULT_COLUMNS} FROM reconciliation_results r WHERE r.run_id = $1 ORDER BY r.day, r.model
"""

# The runs that read any day of [$1, $2], the latest first.
RUNS_OVER = f"""
SELECT {RUN_COLUMNS} FROM reconciliation_runs
WHERE first_day <= $2 AND last_day >= $1
ORDER BY id DESC LIMIT $3
"""

RUN = f"SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE run_id = $1"

# The latest run that succeeded: what the metrics say.
LATEST_SUCCEEDED = f"""
SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE status = 'succeeded' ORDER BY id DESC LIMIT 1
"""

# The latest daily run, and the latest that succeeded: whether today's is due, and from when.
LATEST_SCHEDULED = f"""
SELECT {RUN_COLUMNS} FROM reconciliation_runs
WHERE trigger = 'schedule' AND ($1 OR status = 'succeeded')
ORDER BY id DESC LIMIT 1
"""


@dataclass(frozen=True)
class Run:
    """A finished run, as recorded."""

    run_id: UUID
    trigger: str  # "schedule" | "request"
    requested_by: str | None
    first_day: date
    last_day: date
    as_of: date
    started_at: datetime
    finished_at: datetime
    status: str  # "succeeded" | "failed"
    reason: str | None
    pages: int
    summary: Summary

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class StoredDayModel:
    run_id: UUID
    row: DayModel


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


async def try_run_lock(conn: Connection) -> bool:
    """The run's lock, for the caller's transaction; False: another run holds it."""
    taken: bool = await conn.fetchval(TRY_RUN_LOCK, RUN_LOCK_CLASS)
    return taken


async def ledger_figures(
    conn: Connection, first: date, last: date
) -> dict[date, dict[str, Figures]]:
    """Our calls of the days `[first, last]`, by day and model stem."""
    rows = await conn.fetch(LEDGER_FIGURES, midnight(first), midnight(last + timedelta(days=1)))
    found: dict[date, dict[str, Figures]] = {}
    for row in rows:
        found.setdefault(row["day"], {})[row["model"]] = Figures(
            row["requests"], row["input_tokens"], row["cached_input_tokens"], row["output_tokens"]
        )
    return found


async def insert_results(conn: Connection, run_id: UUID, rows: Sequence[DayModel]) -> None:
    if not rows:
        return
    await conn.execute(
        INSERT_RESULTS,
        run_id,
        [r.day for r in rows],
        [r.model for r in rows],
        [r.status for r in rows],
        *([r.ours.as_tuple()[i] for r in rows] for i in range(4)),
        *([r.theirs.as_tuple()[i] for r in rows] for i in range(4)),
    )


async def insert_run(conn: Connection, run: Run) -> None:
    counts = run.summary.counts
    await conn.execute(
        INSERT_RUN,
        run.run_id,
        run.trigger,
        run.requested_by,
        run.first_day,
        run.last_day,
        run.as_of,
        run.started_at,
        run.finished_at,
        run.status,
        run.reason,
        run.pages,
        counts["matched"],
        counts["drift"],
        counts["provisional"],
        counts["missing-ours"],
        counts["missing-theirs"],
        run.summary.max_drift_percent,
    )


def _run(row: asyncpg.Record) -> Run:
    counts: dict[Status, int] = {
        "matched": row["matched"],
        "drift": row["drift"],
        "provisional": row["provisional"],
        "missing-ours": row["missing_ours"],
        "missing-theirs": row["missing_theirs"],
    }
    max_drift: Decimal | None = row["max_drift_percent"]
    return Run(
        run_id=row["run_id"],
        trigger=row["trigger"],
        requested_by=row["requested_by"],
        first_day=row["first_day"],
        last_day=row["last_day"],
        as_of=row["as_of"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        status=row["status"],
        reason=row["reason"],
        pages=row["pages"],
        summary=Summary(counts, max_drift),
    )


def _result(row: asyncpg.Record) -> StoredDayModel:
    values: list[Any] = list(row.values())
    return StoredDayModel(
        run_id=values[0],
        row=DayModel(
            day=values[1],
            model=values[2],
            status=values[3],
            ours=Figures(*values[4:8]),
            theirs=Figures(*values[8:12]),
        ),
    )


async def latest_results(conn: Connection, first: date, last: date) -> list[StoredDayModel]:
    return [_result(row) for row in await conn.fetch(LATEST_RESULTS, first, last)]


async def run_results(conn: Connection, run_id: UUID) -> list[StoredDayModel]:
    return [_result(row) for row in await conn.fetch(RUN_RESULTS, run_id)]


async def runs_over(conn: Connection, first: date, last: date, limit: int) -> list[Run]:
    return [_run(row) for row in await conn.fetch(RUNS_OVER, first, last, limit)]


async def run_of(conn: Connection, run_id: UUID) -> Run | None:
    row = await conn.fetchrow(RUN, run_id)
    return None if row is None else _run(row)


async def latest_succeeded(conn: Connection) -> Run | None:
    row = await conn.fetchrow(LATEST_SUCCEEDED)
    return None if row is None else _run(row)


async def latest_scheduled(conn: Connection, *, succeeded_only: bool) -> Run | None:
    row = await conn.fetchrow(LATEST_SCHEDULED, not succeeded_only)
    return None if row is None else _run(row)
