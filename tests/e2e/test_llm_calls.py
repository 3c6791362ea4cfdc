"""Every call the question service makes to the LLM is published once as `LlmCallFinished`.

Through the real `openai` SDK against the project's fake LLM, with the real
PostgreSQL and RabbitMQ: what was published is read where billing keeps it
(`llm_calls`), once the question service's outbox holds none of them any more.
Each provider call is one event, billed or not: a retry is a call of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any
from uuid import UUID

from tests.e2e.test_question_llm import ask, llm_stack
from tests.e2e.test_streamed_generation import (
    PATH,
    body,
    headers,
    read_then_leave,
    streaming_stack,
)
from tests.support.databases import ServiceDatabases
from tests.support.fake_llm import (
    completion,
    questions,
    rate_limited,
    running_fake_llm,
    streamed,
)
from tests.support.stack import Stack, start_stack
from tests.support.waiting import eventually

LLM_CALL = "questions.llm_call.v1"


async def published_calls(stack: Stack, company: UUID, count: int) -> list[dict[str, Any]]:
    """The company's calls billing keeps, oldest first, once `count` of them arrived and
    the outbox has no call left to publish: then exactly what was published."""

    async def read() -> tuple[list[Any], list[Any]]:
        pending = await stack.fetch(
            stack.dbs.question_gen, "SELECT id FROM outbox WHERE routing_key = $1", LLM_CALL
        )
        kept = await stack.fetch(
            stack.dbs.billing,
            "SELECT * FROM llm_calls WHERE company_id = $1 ORDER BY occurred_at, event_id",
            company,
        )
        return pending, kept

    _, kept = await eventually(read, until=lambda found: not found[0] and len(found[1]) >= count)
    await asyncio.sleep(0.2)  # a call published twice would show by now
    _, kept = await read()
    return [dict(row) for row in kept]


def outcomes(calls: list[dict[str, Any]]) -> list[str]:
    return sorted(call["outcome"] for call in calls)


async def test_each_json_call_is_published_once_whatever_became_of_it(
    dbs: ServiceDatabases, prefix: str
) -> None:
    with running_fake_llm() as fake:
        async with llm_stack(dbs, prefix, fake.url, llm_timeout_seconds=1.0) as stack:
            # Billed: one call, the provider's figures, naming the generation.
            billed = uuid.uuid4()
            fake.enqueue(questions(4, prompt_tokens=512, completion_tokens=734))
            response = await ask(stack, billed, count=4)
            assert response.status_code == 200, response.text
            [call] = await published_calls(stack, billed, 1)
            assert call["outcome"] == "billed"
            assert call["generation_id"] == UUID(response.json()["generationId"])
            assert (call["prompt_tokens"], call["completion_tokens"]) == (512, 734)
            assert (call["usage_source"], call["model"]) == ("provider", "gpt-4o-2024-08-06")

            # A malformed answer: the provider answered and charges; nothing is billed.
            malformed = uuid.uuid4()
            fake.enqueue(completion("Here are your questions: 1. Why Python?"))
            assert (await ask(stack, malformed)).status_code == 502
            [call] = await published_calls(stack, malformed, 1)
            assert (call["outcome"], call["generation_id"]) == ("failed", None)

            # Rate limited, then answered: two calls, the first unbilled.
            retried = uuid.uuid4()
            fake.enqueue(rate_limited(retry_after_ms=10), questions(3))
            response = await ask(stack, retried, count=3)
            assert response.status_code == 200, response.text
            calls = await published_calls(stack, retried, 2)
            assert outcomes(calls) == ["billed", "failed"]
            [answer] = [call for call in calls if call["outcome"] == "billed"]
            assert answer["generation_id"] == UUID(response.json()["generationId"])

            # Past the deadline: one call, its prompt counted by us.
            late = uuid.uuid4()
            fake.enqueue(questions(10, delay=30))
            assert (await ask(stack, late)).status_code == 504
            [call] = await published_calls(stack, late, 1)
            assert (call["outcome"], call["usage_source"]) == ("timeout", "estimated")
            assert call["prompt_tokens"] > 50
            assert call["completion_tokens"] == 0


async def test_each_streamed_call_is_published_once_billed_when_questions_were_delivered(
    dbs: ServiceDatabases, prefix: str
) -> None:
    with running_fake_llm(streamed(10)) as fake:
        async with streaming_stack(dbs, prefix, fake) as stack:
            # The client leaves after three questions: the call is billed by them.
            left = uuid.uuid4()
            fake.enqueue(streamed(10, pace=0.3))
            assert await read_then_leave(stack, left, body(), 3) == 3
            [call] = await published_calls(stack, left, 1)
            [row] = await stack.fetch(
                stack.dbs.question_gen, "SELECT id FROM generations WHERE company_id = $1", left
            )
            assert (call["outcome"], call["generation_id"]) == ("billed", row["id"])
            assert call["usage_source"] == "estimated"  # an aborted stream gets no usage

            # Gone before the first question: one call, cancelled.
            gone = uuid.uuid4()
            fake.enqueue(streamed(10, first_delay=1.0))
            request = asyncio.create_task(
                stack.questions.post(PATH, json=body(), headers=headers(gone))
            )
            await eventually(lambda: asyncio.sleep(0, len(fake.streams) == 2))
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await request
            [call] = await published_calls(stack, gone, 1)
            assert (call["outcome"], call["generation_id"]) == ("cancelled", None)

            # A complete stream: the provider's figures, cached and reasoning tokens too.
            whole = uuid.uuid4()
            fake.enqueue(streamed(4, cached_tokens=300, reasoning_tokens=20))
            async with stack.questions.stream(
                "POST", PATH, json=body(count=4), headers=headers(whole)
            ) as response:
                assert response.status_code == 200
                await response.aread()
            [call] = await published_calls(stack, whole, 1)
            assert (call["outcome"], call["usage_source"]) == ("billed", "provider")
            assert (call["prompt_tokens"], call["cached_prompt_tokens"]) == (321, 300)
            assert (call["completion_tokens"], call["reasoning_tokens"]) == (123, 20)


async def test_the_offline_writers_calls_are_published_too(
    dbs: ServiceDatabases, prefix: str, company: UUID
) -> None:
    async with start_stack(dbs, prefix, services=("question_gen", "billing")) as stack:
        response = await ask(stack, company, count=3)
        assert response.status_code == 200, response.text
        [call] = await published_calls(stack, company, 1)
        assert (call["outcome"], call["model"]) == ("billed", "offline")
        assert call["generation_id"] == UUID(response.json()["generationId"])
        assert call["usage_source"] == "estimated"
