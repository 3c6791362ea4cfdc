"""The CSV export: a company's usage rows streamed from PostgreSQL's `COPY ... TO STDOUT`.

PostgreSQL writes the CSV itself (header, quoting, money with its 4 places);
chunks pass through a small bounded queue to the HTTP response, so the memory
held is a few chunks whatever the number of rows, and a slow client slows the
copy down instead of piling rows up in the process.

The file is opened by finance in a spreadsheet, which runs a cell that starts with
`=`, `+`, `-`, `@`, a tab or a carriage return as a formula: a draft id
`=HYPERLINK(...)` would become a live link. Every text cell a client can write (the
draft id, the model's name) is neutralised as OWASP advises, with a `'` before it,
in the same statement; ids, instants, periods and numbers are never touched, and no
row passes through Python.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from uuid import UUID

import asyncpg

# A text cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV
# Injection"): written with a `'` before it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(column: str) -> str:
    """The SQL of `column` as a text cell no spreadsheet runs as a formula."""
    # ascii(): the first character's code point, an integer compared (no substring made).
    starts = ", ".join(str(ord(character)) for character in FORMULA_STARTS)
    quote = "''''"  # SQL's literal of one '
    return f"CASE WHEN ascii({column}) IN ({starts}) THEN {quote} || {column} ELSE {column} END"


# The contract's columns, in its order, named as its header row names them.
EXPORT = f"""
SELECT
    u.id AS "id",
    to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "createdAt",
    u.period AS "period",
    u.job_id AS "jobId",
    {neutralised("known.title")} AS "jobTitle",
    {neutralised("u.draft_job_id")} AS "draftJobId",
    u.question_count AS "questionCount",
    u.prompt_tokens AS "promptTokens",
    u.completion_tokens AS "completionTokens",
    u.total_tokens AS "totalTokens",
    u.cost AS "cost",
    $4::text AS "currency",
    {neutralised("u.model_used")} AS "modelUsed",
    u.price_id AS "priceId"
FROM question_generation_usage u
-- The titles of the company's jobs, joined once for the whole export (a lookup per row
-- halved the rows per second).
LEFT JOIN known_jobs known ON known.job_id = u.job_id AND known.company_id = $1
WHERE u.company_id = $1
  AND ($2::timestamptz IS NULL OR u.created_at >= $2::timestamptz)
  AND ($3::timestamptz IS NULL OR u.created_at < $3::timestamptz)
ORDER BY u.created_at, u.id
"""

HEADER = (
    "id,createdAt,period,jobId,jobTitle,draftJobId,questionCount,promptTokens,completionTokens,"
    "totalTokens,cost,currency,modelUsed,priceId"
)

# Chunks (PostgreSQL's CopyData buffers, a few kB to 64 kB) waiting for the client.
QUEUE_CHUNKS = 8


async def stream_usage_csv(
    pool: asyncpg.Pool,
    company_id: UUID,
    since: datetime | None,
    until: datetime | None,
    currency: str,
) -> AsyncIterator[bytes]:
    """The CSV, chunk by chunk; the copy stops if the client goes away."""
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)

    async def copy() -> None:
        try:
            async with pool.acquire() as conn:
                await conn.copy_from_query(
                    EXPORT,
                    company_id,
                    since,
                    until,
                    currency,
                    output=keep,
                    format="csv",
                    header=True,
                )
        except asyncio.CancelledError:
            raise  # the client went away: nobody waits for the end
        except BaseException:
            await chunks.put(None)
            raise
        await chunks.put(None)

    async def keep(data: bytes | bytearray | memoryview) -> None:
        await chunks.put(bytes(data))  # a copy: the driver may reuse its buffer

    copying = asyncio.create_task(copy())
    try:
        while (chunk := await chunks.get()) is not None:
            yield chunk
        await copying  # raises what the copy raised: the response is then cut short
    finally:
        if not copying.done():
            copying.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await copying
