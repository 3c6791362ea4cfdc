"""An `Idempotency-Key` against the real database: one generation per key, however a retry races.

The question generator is driven directly (the HTTP layer adds nothing here), with
a writer at the LLM's boundary that can hold its answer back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg
import pytest

from services.question_gen.budgets.guard import BudgetGuard
from services.question_gen.generation import Answer, CallLog, MalformedAnswer, Tokens
from services.question_gen.handlers import GenerationNotStarted, QuestionGenerator
from services.question_gen.llm import Deliver
from services.question_gen.schemas import GenerateQuestionsRequest
from services.servicekit import db
from tests.support.databases import ServiceDatabases
from tests.support.stack import question_settings

REQUEST = GenerateQuestionsRequest.model_validate(
    {"draftJobId": "d-1", "jobDescription": "Rust engineer", "numberOfQuestions": 3}
)


class HeldWriter:
    """Answers at once, except the calls it holds, each until the test lets it go.

    `failing`: the calls (1 first) that, once let go, find the answer malformed.
    """

    model = "held"

    def __init__(self, held: int = 1, failing: tuple[int, ...] = ()) -> None:
        self.calls = 0
        self.asked = [asyncio.Event() for _ in range(held)]
        self.let_go = [asyncio.Event() for _ in range(held)]
        self.failing = failing

    async def write(self, description: str, count: int, calls: CallLog | None = None) -> Answer:
        self.calls += 1
        call = self.calls
        if call <= len(self.asked):
            self.asked[call - 1].set()
            await self.let_go[call - 1].wait()
        if call in self.failing:
            raise MalformedAnswer("not JSON")
        return Answer([f"question {n}" for n in range(count)], Tokens(10, 20), self.model)

    async def stream(
        self, description: str, count: int, deliver: Deliver, calls: CallLog | None = None
    ) -> Answer:
        raise NotImplementedError("the JSON call only")

    async def close(self) -> None:
        return None


@pytest.fixture
async def pool(dbs: ServiceDatabases) -> AsyncIterator[asyncpg.Pool]:
    created = await db.create_pool(dbs.question_gen, min_size=1, max_size=4)
    try:
        yield created
    finally:
        await created.close()


def generator_of(
    pool: asyncpg.Pool, dbs: ServiceDatabases, prefix: str, writer: HeldWriter, **settings: object
) -> QuestionGenerator:
    config = question_settings(dbs, prefix, **settings)
    guard = BudgetGuard(pool, hold_seconds=config.budget_hold, refresh_seconds=0)
    return QuestionGenerator(pool, writer, config, guard)


async def test_a_stale_takeover_records_one_generation_and_both_get_its_answer(
    pool: asyncpg.Pool, dbs: ServiceDatabases, prefix: str, company: UUID
) -> None:
    writer = HeldWriter()
    generator = generator_of(pool, dbs, prefix, writer)
    first = asyncio.create_task(generator.generate(company, REQUEST, "takeover"))
    await writer.asked[0].wait()
    await age_claims(pool)  # the first stalls past the age of a dead request's claim
    retry = await generator.generate(company, REQUEST, "takeover")
    writer.let_go[0].set()
    late = await first

    recorded, events, stored = await recorded_under_key(pool)
    assert (recorded, events) == (1, 1)
    assert late == retry
    assert stored == str(retry.generation_id)
    assert writer.calls == 2


async def test_a_request_taken_over_that_fails_leaves_the_key_to_its_new_owner(
    pool: asyncpg.Pool, dbs: ServiceDatabases, prefix: str, company: UUID
) -> None:
    writer = HeldWriter(held=2, failing=(1,))
    generator = generator_of(pool, dbs, prefix, writer)
    first = asyncio.create_task(generator.generate(company, REQUEST, "takeover"))
    await writer.asked[0].wait()
    await age_claims(pool)
    retry = asyncio.create_task(generator.generate(company, REQUEST, "takeover"))
    await writer.asked[1].wait()
    # The first fails while the retry that took its claim over is still asking the LLM:
    # it may not give the retry's claim away.
    writer.let_go[0].set()
    with pytest.raises(MalformedAnswer):
        await first
    third = asyncio.create_task(generator.generate(company, REQUEST, "takeover"))
    writer.let_go[1].set()
    answers = {(await retry).generation_id, (await third).generation_id}

    recorded, events, stored = await recorded_under_key(pool)
    assert (recorded, events) == (1, 1)
    assert answers == {UUID(stored)}
    assert writer.calls == 2


async def age_claims(pool: asyncpg.Pool) -> None:
    """Every claim now looks as old as a dead request's."""
    async with pool.acquire() as conn:
        await conn.execute("UPDATE idempotency_keys SET claimed_at = now() - interval '1 hour'")


async def recorded_under_key(pool: asyncpg.Pool) -> tuple[int, int, str]:
    """Generations recorded, events written, and the generation the key answers with."""
    async with pool.acquire() as conn:
        recorded = await conn.fetchval("SELECT count(*) FROM generations")
        events = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE routing_key = 'questions.generated.v1'"
        )
        stored = await conn.fetchval("SELECT response->>'generationId' FROM idempotency_keys")
    return recorded, events, stored


async def test_a_request_that_gets_no_connection_gives_up_before_the_llm(
    pool: asyncpg.Pool, dbs: ServiceDatabases, prefix: str, company: UUID
) -> None:
    writer = HeldWriter(held=0)
    generator = generator_of(pool, dbs, prefix, writer, wait_before_llm_seconds=0.2)
    # Every connection of the pool is busy elsewhere, for longer than the request may wait.
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        async with asyncio.timeout(10):
            with pytest.raises(GenerationNotStarted):
                await generator.generate(company, REQUEST, None)
    finally:
        for conn in held:
            await pool.release(conn)
    assert writer.calls == 0
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM generations") == 0
    # Once connections are free again, the same request goes through.
    answered = await generator.generate(company, REQUEST, str(uuid.uuid4()))
    assert answered.question_count == 3
