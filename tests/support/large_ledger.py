"""A large company's ledger, loaded by bulk SQL: the console at scale (its browser test and
its benchmark load the same one).

`rows` usage rows over the last 89 days, at the default price: 49 of every 50 on jobs of
49 rows each, the rest on drafts of 10 rows never saved. The caller builds the rollups
after with the project's own rebuild, as a deployment over an existing ledger would.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

ROWS_PER_JOB = 49
ROWS_PER_DRAFT = 10
# Rows on drafts: one in this many.
DRAFT_SHARE = 50

# Priced as the default price prices them: 10 questions cost 0.1000.
LEDGER = """
INSERT INTO question_generation_usage (
    event_id, company_id, job_id, draft_job_id, prompt_tokens, completion_tokens,
    total_tokens, question_count, cost, model_used, created_at, period
)
SELECT gen_random_uuid(), $1::uuid, job_id, draft_job_id, 100, 200, 300, questions,
       (questions * 0.01)::numeric(10, 4), 'gpt-4o', at,
       to_char(at AT TIME ZONE 'UTC', 'YYYY-MM')
FROM (
    SELECT md5($1::uuid::text || '/job/' || (n / $4::int))::uuid AS job_id,
           NULL::text AS draft_job_id,
           1 + n % 19 AS questions,
           now() - ((n % 7919) / 7919.0) * interval '89 days' AS at
    FROM generate_series(0, $2::int - 1) AS n
    UNION ALL
    SELECT NULL::uuid, 'draft-' || (n / $5::int), 1 + n % 7,
           now() - ((n % 7907) / 7907.0) * interval '89 days'
    FROM generate_series(0, $3::int - 1) AS n
) AS ledger
"""


@dataclass(frozen=True)
class LargeLedger:
    rows: int

    @property
    def draft_rows(self) -> int:
        return self.rows // DRAFT_SHARE

    @property
    def drafts(self) -> int:
        """Drafts waiting: each of the last 89 days' drafts, none saved."""
        return self.draft_rows // ROWS_PER_DRAFT

    @property
    def jobs(self) -> int:
        job_rows = self.rows - self.draft_rows
        return -(-job_rows // ROWS_PER_JOB)


async def load_large_ledger(dsn: str, company: UUID, ledger: LargeLedger) -> None:
    """The company's ledger into a migrated billing database (its rollups not yet built)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute(
            LEDGER,
            company,
            ledger.rows - ledger.draft_rows,
            ledger.draft_rows,
            ROWS_PER_JOB,
            ROWS_PER_DRAFT,
        )
        await conn.execute("VACUUM (ANALYZE) question_generation_usage")
    finally:
        await conn.close()
