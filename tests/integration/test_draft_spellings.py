"""Draft ids stored before they were canonical: each service's migration gives them one spelling.

Before, a draft id was kept and compared as the client sent it: usage generated under
`C263101C-...` and a job saved from `c263101c-...` never met, and the usage stayed an open
draft for good. Each database is brought to the release before its migration, filled as
that release filled it (the ids as sent), then migrated: every id that is a UUID takes its
one spelling, drafts that differ only by spelling become one, billing moves the drafts
whose job it knows onto it, and every rollup stays equal to a recomputation from the rows.

Billing's database is filled by today's recording code, which writes tables of later
migrations (cost of goods, titles, credits): it is brought to today's schema with its
draft-id migration alone pending (`migrate_without`), filled, then migrated.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from prometheus_client import REGISTRY

from contracts.events import Event, JobCreated, QuestionsGenerated, canonical_draft_id
from services.billing.ledger.record import record_batch, record_events
from services.billing.ledger.rules import Entry, Pricing
from services.billing.rollups.rebuild import rebuild_all
from services.jobs import store as jobs_store
from services.migrate import MIGRATION_SETS
from services.servicekit.migrations import migrate
from tests.support.databases import drop_databases, dsn_of, migrate_before, migrate_without
from tests.support.env import RUN_ID
from tests.support.events import generated, job_created

BILLING_CANONICAL = 5  # services/billing/migrations/0005_canonical_draft_ids.sql
JOBS_CANONICAL = 2
QUESTION_GEN_CANONICAL = 4

SPELLINGS = (
    "C263101C-7E1D-4B8A-9F3E-2D5A6B7C8D9E",
    "{c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e}",
    "{C263101C7E1D4B8A9F3E2D5A6B7C8D9E}",
    "urn:uuid:c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e",
    "URN:UUID:{C263101C-7E1D-4B8A-9F3E-2D5A6B7C8D9E}",
    "c263101c7e1d4b8a9f3e2d5a6b7c8d9e",
    "c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e",
    # Not UUIDs: kept as they are.
    "Draft-X",
    "C263101C-7E1D-4B8A-9F3E-2D5A6B7C8D9",
    "{c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e",
    "c263101c-7e1d4b8a-9f3e-2d5a6b7c8d9e",
    " c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e",
    "urn:uuid:Draft-X",
)


@pytest.fixture
async def fresh_dsn() -> AsyncIterator[str]:
    name = f"{RUN_ID}_spelling_{uuid.uuid4().hex[:8]}"
    yield dsn_of(name)  # migrate() creates it
    await drop_databases([name])


def pairs(records: list[asyncpg.Record]) -> dict[Any, Any]:
    """Two-column rows as a mapping of the first column to the second."""
    return {record[0]: record[1] for record in records}


def as_sent(event: Any, draft: str) -> Any:
    """The event as the previous release recorded it: its draft id as the client spelled it."""
    return event.model_copy(update={"draft_job_id": draft})


def entries(*events: Event) -> list[Entry]:
    assert all(isinstance(event, (QuestionsGenerated, JobCreated)) for event in events)
    return list(events)  # type: ignore[arg-type]


async def record(pool: asyncpg.Pool, *events: Event) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await record_events(conn, entries(*events), default=Pricing())


async def rollups_agree(dsn: str) -> None:
    checked = await rebuild_all(dsn, rows_per_group=1000, check=True)
    assert checked["differing_rows"] == {}, checked


async def test_question_gen_keeps_every_draft_id_in_its_one_spelling(fresh_dsn: str) -> None:
    await migrate_before(fresh_dsn, "question_gen", QUESTION_GEN_CANONICAL)
    conn = await asyncpg.connect(fresh_dsn)
    try:
        ids = {uuid.uuid4(): spelling for spelling in SPELLINGS}
        await conn.executemany(
            "INSERT INTO generations (id, company_id, draft_job_id, question_count,"
            " prompt_tokens, completion_tokens, total_tokens, model, created_at)"
            " VALUES ($1, $2, $3, 10, 1, 1, 2, 'm', now())",
            [(generation, uuid.uuid4(), spelling) for generation, spelling in ids.items()],
        )
        await migrate(fresh_dsn, MIGRATION_SETS["question_gen"])
        stored = pairs(await conn.fetch("SELECT id, draft_job_id FROM generations"))
    finally:
        await conn.close()
    # The migration's SQL and the contract's rule agree on every spelling.
    assert stored == {generation: canonical_draft_id(s) for generation, s in ids.items()}
    assert set(stored.values()) == {
        "c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e",
        *(s for s in SPELLINGS if canonical_draft_id(s) == s),
    }


async def test_jobs_keep_one_job_per_draft_whatever_it_was_spelled(fresh_dsn: str) -> None:
    await migrate_before(fresh_dsn, "jobs", JOBS_CANONICAL)
    company, other = uuid.uuid4(), uuid.uuid4()
    d1, d2, d3 = (uuid.uuid4() for _ in range(3))
    t0 = datetime.now(UTC) - timedelta(days=1)
    jobs = {  # job id: (company, draft as sent, created at)
        "one": (company, str(d1).upper(), t0),
        # Two jobs from one draft (the previous release compared spellings): the one already
        # canonical keeps the draft, though it is newer; the other keeps its spelling.
        "two-older": (company, "{" + str(d2) + "}", t0),
        "two-canonical": (company, str(d2), t0 + timedelta(minutes=1)),
        # Two again, neither canonical: the oldest takes the draft.
        "three-oldest": (company, str(d3).upper(), t0),
        "three-newer": (company, "urn:uuid:" + str(d3), t0 + timedelta(minutes=1)),
        "elsewhere": (other, str(d1).upper(), t0),  # another company's: its own draft
        "not-a-uuid": (company, "Draft-X", t0),
    }
    ids = {name: uuid.uuid4() for name in jobs}
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await conn.executemany(
            "INSERT INTO jobs (id, company_id, title, draft_job_id, created_at)"
            " VALUES ($1, $2, 'a job', $3, $4)",
            [(ids[name], *values) for name, values in jobs.items()],
        )
        await migrate(fresh_dsn, MIGRATION_SETS["jobs"])
        stored = pairs(await conn.fetch("SELECT id, draft_job_id FROM jobs"))
        found = {
            draft: await jobs_store.job_id_by_draft(conn, company, draft)
            for draft in (str(d1), str(d2), str(d3))
        }
    finally:
        await conn.close()
    assert {name: stored[ids[name]] for name in jobs} == {
        "one": str(d1),
        "two-older": "{" + str(d2) + "}",
        "two-canonical": str(d2),
        "three-oldest": str(d3),
        "three-newer": "urn:uuid:" + str(d3),
        "elsewhere": str(d1),
        "not-a-uuid": "Draft-X",
    }
    # A new job from any of these drafts is refused (409), naming the job that keeps it.
    assert found == {
        str(d1): ids["one"],
        str(d2): ids["two-canonical"],
        str(d3): ids["three-oldest"],
    }


async def test_billing_merges_drafts_by_spelling_and_moves_those_whose_job_it_knows(
    fresh_dsn: str,
) -> None:
    await migrate_without(fresh_dsn, "billing", BILLING_CANONICAL)
    a, b = uuid.uuid4(), uuid.uuid4()
    d1, d2, d3, d4 = (uuid.uuid4() for _ in range(4))
    t0 = datetime.now(UTC) - timedelta(hours=1)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=4)
    try:
        j1 = job_created(a, draft=str(d1), at=t0)
        j3 = as_sent(job_created(a, draft="x", at=t0), str(d3).upper())
        j4_first = as_sent(job_created(a, draft="x", at=t0), str(d4).upper())
        j4_canonical = job_created(a, draft=str(d4), at=t0 + timedelta(minutes=1))
        usage = {
            # d1: generated upper case and in braces, saved lower case: both stuck as drafts.
            "d1-upper": as_sent(generated(a, draft="x", at=t0), str(d1).upper()),
            "d1-braces": as_sent(generated(a, draft="x", at=t0), "{" + str(d1) + "}"),
            # d2: three spellings, no job yet: one draft of three generations.
            "d2-braces": as_sent(generated(a, draft="x", at=t0), "{" + str(d2).upper() + "}"),
            "d2-job-id": generated(a, job_id=d2, at=t0 + timedelta(days=1)),
            "d2-urn": as_sent(generated(a, draft="x", at=t0), f"urn:uuid:{d2}"),
            # d3: sent as the jobId (held as its canonical text), the job saved upper case.
            "d3-job-id": generated(a, job_id=d3, at=t0),
            # d4: made two jobs; this one met the first (same spelling) and stays on it.
            "d4-first": as_sent(generated(a, draft="x", at=t0), str(d4).upper()),
            "not-a-uuid": generated(a, draft="Draft-X", at=t0),
            # Company b spelled d1 too: its draft, never a's job.
            "b-d1": as_sent(generated(b, draft="x", at=t0), str(d1).upper()),
        }
        await record(pool, *usage.values())
        await record(pool, j1, j3, j4_first)
        await record(pool, j4_canonical)
        before = await costs(pool)
        stuck = await pool.fetchval(
            "SELECT count(*) FROM question_generation_usage WHERE draft_job_id IS NOT NULL"
        )
        assert stuck == len(usage) - 1  # only d4-first met its job

        await migrate(fresh_dsn, MIGRATION_SETS["billing"])

        rows = {
            row["event_id"]: row
            for row in await pool.fetch("SELECT * FROM question_generation_usage")
        }
        placed = {
            name: (rows[e.event_id]["job_id"], rows[e.event_id]["draft_job_id"])
            for name, e in usage.items()
        }
        assert placed == {
            "d1-upper": (j1.job_id, None),
            "d1-braces": (j1.job_id, None),
            "d2-braces": (None, str(d2)),
            "d2-job-id": (None, str(d2)),
            "d2-urn": (None, str(d2)),
            "d3-job-id": (j3.job_id, None),
            "d4-first": (j4_first.job_id, None),
            "not-a-uuid": (None, "Draft-X"),
            "b-d1": (None, str(d1)),
        }
        known = pairs(await pool.fetch("SELECT job_id, draft_job_id FROM known_jobs"))
        assert known == {
            j1.job_id: str(d1),
            j3.job_id: str(d3),
            j4_first.job_id: str(d4).upper(),  # the canonical spelling had its job already
            j4_canonical.job_id: str(d4),
        }
        drafts = {
            (row["company_id"], row["draft_job_id"]): row["generations"]
            for row in await pool.fetch("SELECT * FROM rollup_drafts")
        }
        assert drafts == {(a, str(d2)): 3, (a, "Draft-X"): 1, (b, str(d1)): 1}
        assert await costs(pool) == before  # nothing billed or lost: only moved
        await rollups_agree(fresh_dsn)

        # From now on every spelling meets the one stored.
        late = generated(a, draft=str(d4).upper())
        more = generated(a, draft=str(d2).upper())
        await record(pool, late, more)
        saved = job_created(a, draft="{" + str(d2) + "}")
        await record(pool, saved)
        after = pairs(
            await pool.fetch(
                "SELECT event_id, job_id FROM question_generation_usage WHERE event_id = ANY($1)",
                [late.event_id, more.event_id, usage["d2-urn"].event_id],
            )
        )
        assert after == {
            late.event_id: j4_canonical.job_id,
            more.event_id: saved.job_id,
            usage["d2-urn"].event_id: saved.job_id,
        }
        await rollups_agree(fresh_dsn)
    finally:
        await pool.close()


async def costs(pool: asyncpg.Pool) -> dict[UUID, Decimal]:
    return pairs(
        await pool.fetch(
            "SELECT company_id, sum(cost) FROM question_generation_usage GROUP BY company_id"
        )
    )


async def test_billing_migrates_beside_running_batches_without_a_deadlock_or_a_miss(
    fresh_dsn: str,
) -> None:
    """Batches of the new release go on while the migration runs: they wait for it, or it
    for them, and neither fails; the rollups stay exact and every draft meets its job."""
    await migrate_without(fresh_dsn, "billing", BILLING_CANONICAL)
    companies = [uuid.uuid4() for _ in range(4)]
    drafts = {company: uuid.uuid4() for company in companies}
    pool = await asyncpg.create_pool(fresh_dsn, min_size=2, max_size=12)
    sent: list[UUID] = []
    retries_before = transient_retries()
    try:
        jobs = {company: job_created(company, draft=str(drafts[company])) for company in companies}
        stuck = [
            as_sent(generated(company, draft="x"), str(drafts[company]).upper())
            for company in companies
            for _ in range(3)
        ]
        await record(pool, *stuck)
        await record(pool, *jobs.values())
        sent += [event.event_id for event in stuck]

        async def batch(*events: Event) -> None:
            results = await record_batch(pool, entries(*events), default=Pricing())
            failures = [result for result in results if isinstance(result, Exception)]
            assert failures == []
            sent.extend(event.event_id for event in events if isinstance(event, QuestionsGenerated))

        # A batch in flight when the migration starts, on the very job it moves drafts onto:
        # it holds its rows until the migration has asked for its locks.
        held = await pool.acquire()
        transaction = held.transaction()
        await transaction.start()
        first = generated(companies[0], draft=str(drafts[companies[0]]))
        await record_events(held, [first], default=Pricing())
        migrating = asyncio.create_task(migrate(fresh_dsn, MIGRATION_SETS["billing"]))
        await asyncio.sleep(0.2)  # the migration now waits for the batch's lock
        assert not migrating.done()
        queued = [
            asyncio.create_task(
                batch(
                    generated(company, draft=str(drafts[company]).lower()),
                    generated(company, draft=f"{{{drafts[company]}}}"),
                    generated(company),
                    job_created(company, draft=f"new-{round_}"),
                    generated(company, draft=f"new-{round_}"),
                )
            )
            for round_ in range(3)
            for company in companies
        ]
        await asyncio.sleep(0.2)  # queued behind the migration
        await transaction.commit()
        await pool.release(held)
        sent.append(first.event_id)
        applied = await asyncio.wait_for(migrating, 60)
        await asyncio.wait_for(asyncio.gather(*queued), 60)
    finally:
        await pool.close()

    assert applied == [f"billing/{migration_file('billing', BILLING_CANONICAL)}"]
    conn = await asyncpg.connect(fresh_dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_id, job_id, draft_job_id FROM question_generation_usage"
        )
    finally:
        await conn.close()
    assert transient_retries() == retries_before  # no batch hit a deadlock and retried
    assert sorted(row["event_id"] for row in rows) == sorted(sent)  # each once
    waiting = {row["draft_job_id"] for row in rows if row["job_id"] is None}
    assert all(draft.startswith("draft-") for draft in waiting), waiting  # only jobless drafts
    on_jobs = {row["job_id"] for row in rows if row["draft_job_id"] is None}
    assert {job.job_id for job in jobs.values()} <= on_jobs
    await rollups_agree(fresh_dsn)


def migration_file(service: str, version: int) -> str:
    [own] = [found for found in MIGRATION_SETS[service] if found.name == service]
    [name] = [path.name for number, path in own.files() if number == version]
    return name


def transient_retries() -> float:
    return REGISTRY.get_sample_value("billing_transient_retries_total") or 0.0
