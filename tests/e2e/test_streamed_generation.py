"""Streamed generation through the real `openai` SDK, against a streaming OpenAI-compatible server.

The question service runs under a real uvicorn server on loopback (a stream and
a client that hangs up cannot be shown through an in-process transport), with
billing beside it, the real PostgreSQL and RabbitMQ; the LLM is the project's
fake (`tests.support.fake_llm`), streaming server-sent chunks as OpenAI does.
What is billed is read where it lives: the generation rows and billing's ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from tests.e2e.test_budget_enforcement import limit_known, set_limit
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.fake_llm import FakeLlm, failure, running_fake_llm, streamed
from tests.support.sse import STREAM, Event, events, read_all
from tests.support.stack import Stack, start_stack
from tests.support.waiting import eventually

PATH = "/api/ai/generate-questions"
DESCRIPTION = "Senior Python engineer: event-driven billing on RabbitMQ and PostgreSQL."


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with running_fake_llm(streamed(10)) as server:
        yield server


@contextlib.asynccontextmanager
async def streaming_stack(
    dbs: ServiceDatabases, prefix: str, fake: FakeLlm, **overrides: Any
) -> AsyncIterator[Stack]:
    settings = {
        "openai_api_key": "test-key",
        "openai_base_url": fake.url,
        "openai_model": "gpt-4o",
        "llm_timeout_seconds": 10.0,
        "llm_max_retries": 2,
        "llm_retry_delay_seconds": 0.01,
        **overrides,
    }
    async with start_stack(
        dbs,
        prefix,
        services=("billing", "question_gen"),
        question_overrides=settings,
        serve_questions=True,
    ) as stack:
        yield stack


def body(draft: str | None = None, count: int = 10) -> dict[str, Any]:
    return {
        "draftJobId": draft or str(uuid.uuid4()),
        "jobDescription": DESCRIPTION,
        "numberOfQuestions": count,
    }


def headers(company: UUID, key: str | None = None) -> dict[str, str]:
    found = {**bearer(company), **STREAM}
    if key is not None:
        found["Idempotency-Key"] = key
    return found


async def generation_rows(stack: Stack, company: UUID) -> list[dict[str, Any]]:
    rows = await stack.fetch(
        stack.dbs.question_gen,
        "SELECT * FROM generations WHERE company_id = $1 ORDER BY created_at",
        company,
    )
    return [dict(row) for row in rows]


async def usage_rows(stack: Stack, company: UUID, count: int) -> list[dict[str, Any]]:
    rows = await eventually(lambda: stack.usage(company), until=lambda rows: len(rows) >= count)
    return [dict(row) for row in rows]


async def read_then_leave(stack: Stack, company: UUID, payload: dict[str, Any], k: int) -> int:
    """Read `k` question events, then close the connection; the questions read."""
    read = 0
    async with stack.questions.stream("POST", PATH, json=payload, headers=headers(company)) as r:
        assert r.status_code == 200, await r.aread()
        async for event in events(r):
            assert event.name == "question", event
            read += 1
            if read == k:
                break
    return read


def questions_of(found: list[Event]) -> list[str]:
    return [event.data["text"] for event in found if event.name == "question"]


async def test_questions_arrive_while_the_model_writes_and_done_is_the_json_answer(
    dbs: ServiceDatabases, prefix: str, fake: FakeLlm, company: UUID
) -> None:
    fake.default = streamed(10, pace=0.1, cached_tokens=300, reasoning_tokens=20)
    async with streaming_stack(dbs, prefix, fake) as stack:
        found: list[Event] = []
        writing_at_first: tuple[bool, int] | None = None
        async with stack.questions.stream("POST", PATH, json=body(), headers=headers(company)) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            async for event in events(r):
                if writing_at_first is None:
                    [record] = fake.streams
                    writing_at_first = (record.finished, record.questions_written)
                found.append(event)

        # The first question came while the fake had most of the answer still to write.
        assert writing_at_first is not None
        finished, written = writing_at_first
        assert not finished
        assert written < 5
        assert [event.name for event in found] == ["question"] * 10 + ["done"]
        assert [event.data["index"] for event in found[:10]] == list(range(10))
        done = found[-1].data
        assert [q["text"] for q in done["questions"]] == questions_of(found)

        # What the SDK sent: a stream, asking for the provider's usage.
        sent = fake.requests[0].body
        assert sent["stream"] is True
        assert sent["stream_options"] == {"include_usage": True}

        whole = await stack.questions.post(
            PATH, json=body(done["draftJobId"]), headers=bearer(company)
        )
        assert whole.status_code == 200, whole.text
        answered = whole.json()
        assert {**done, "generationId": None} == {**answered, "generationId": None}
        assert done["usage"] == {"promptTokens": 321, "completionTokens": 123, "totalTokens": 444}

        streamed_row, json_row = await generation_rows(stack, company)
        assert streamed_row["id"] == UUID(done["generationId"])
        assert streamed_row["stream_end"] == "completed"
        assert json_row["stream_end"] is None
        for row in (streamed_row, json_row):
            assert row["question_count"] == 10
            assert row["usage_source"] == "provider"
            assert (row["cached_prompt_tokens"], row["reasoning_tokens"]) == (300, 20)
        billed = await usage_rows(stack, company, 2)
        assert [row["cost"] for row in billed] == [Decimal("0.1000")] * 2


async def test_a_client_that_leaves_is_billed_what_it_read_and_the_llm_call_is_cut(
    dbs: ServiceDatabases, prefix: str, fake: FakeLlm, company: UUID
) -> None:
    # A question every half second: the client has left long before the fourth is written.
    fake.default = streamed(10, pace=0.5)
    async with streaming_stack(dbs, prefix, fake) as stack:
        draft = str(uuid.uuid4())
        assert await read_then_leave(stack, company, body(draft), 3) == 3

        # The fake saw its connection closed: the provider stops writing too.
        await eventually(lambda: asyncio.sleep(0, fake.streams[0].client_closed))
        assert not fake.streams[0].finished
        [row] = await eventually(lambda: generation_rows(stack, company))
        assert row["question_count"] == 3
        assert row["stream_end"] == "disconnected"
        # No usage ever comes for an aborted stream: the tokens are counted.
        assert row["usage_source"] == "estimated"
        assert row["prompt_tokens"] > 50
        assert row["completion_tokens"] > 20
        [usage] = await usage_rows(stack, company, 1)
        assert (usage["question_count"], usage["cost"]) == (3, Decimal("0.0300"))
        assert usage["draft_job_id"] == draft

        # Gone before the first question: nothing billed, no event.
        other = uuid.uuid4()
        fake.enqueue(streamed(10, first_delay=1.0, pace=0.1))
        request = asyncio.create_task(
            stack.questions.post(PATH, json=body(), headers=headers(other))
        )
        await eventually(lambda: asyncio.sleep(0, len(fake.streams) == 2))
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        await eventually(lambda: asyncio.sleep(0, fake.streams[1].client_closed), timeout=5)
        await asyncio.sleep(0.3)  # time to record, if it were to
        assert await generation_rows(stack, other) == []
        outbox = await stack.fetch(
            stack.dbs.question_gen,
            "SELECT * FROM outbox WHERE routing_key <> 'questions.llm_call.v1'",
        )
        assert outbox == []  # the first stream's event was published; none for the second
        assert fake.streams[1].questions_written == 0


async def test_an_llm_failing_or_timing_out_mid_stream_bills_what_was_delivered(
    dbs: ServiceDatabases, prefix: str, fake: FakeLlm
) -> None:
    async with streaming_stack(dbs, prefix, fake, llm_timeout_seconds=1.5) as stack:
        cases = {
            "dropped": (streamed(10, pace=0.02, fail_after=4), 503),
            "error-event": (streamed(10, pace=0.02, fail_after=4, failure="event"), 503),
        }
        for name, (reply, status) in cases.items():
            company = uuid.uuid4()
            fake.enqueue(reply)
            async with stack.questions.stream(
                "POST", PATH, json=body(), headers=headers(company)
            ) as r:
                found = await read_all(r)
            assert [event.name for event in found] == ["question"] * 4 + ["error"], name
            problem = found[-1].data
            assert problem["status"] == status, name
            assert problem["questionCount"] == 4, name
            [row] = await generation_rows(stack, company)
            assert str(row["id"]) == problem["generationId"], name
            assert (row["question_count"], row["stream_end"]) == (4, "failed"), name
            [usage] = await usage_rows(stack, company, 1)
            assert usage["cost"] == Decimal("0.0400"), name

        # A stream that trickles is cut at the deadline, billed for what came before it.
        company = uuid.uuid4()
        fake.enqueue(streamed(10, pace=0.4))
        async with stack.questions.stream("POST", PATH, json=body(), headers=headers(company)) as r:
            found = await read_all(r)
        delivered = len(questions_of(found))
        assert 1 <= delivered < 10
        assert found[-1].name == "error"
        assert found[-1].data["status"] == 504
        [row] = await generation_rows(stack, company)
        assert (row["question_count"], row["stream_end"]) == (delivered, "timeout")

        # A failure before the first question is retried; nothing was sent yet.
        company = uuid.uuid4()
        fake.enqueue(failure(500), streamed(3))
        async with stack.questions.stream("POST", PATH, json=body(), headers=headers(company)) as r:
            found = await read_all(r)
        assert [event.name for event in found] == ["question"] * 3 + ["done"]

        # Failing before any question, past its retries: the usual problem, nothing billed.
        company = uuid.uuid4()
        fake.enqueue(failure(500), failure(500), failure(500))
        refused = await stack.questions.post(PATH, json=body(), headers=headers(company))
        assert refused.status_code == 503
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "nothing was billed" in refused.json()["detail"]
        assert await generation_rows(stack, company) == []


async def test_a_retry_with_the_key_gets_what_was_recorded(
    dbs: ServiceDatabases, prefix: str, fake: FakeLlm, company: UUID
) -> None:
    fake.default = streamed(10, pace=0.2)
    async with streaming_stack(dbs, prefix, fake) as stack:
        finished = body(count=4)
        fake.enqueue(streamed(4))
        async with stack.questions.stream(
            "POST", PATH, json=finished, headers=headers(company, "finished")
        ) as r:
            first = await read_all(r)
        calls = fake.request_count

        # Again as a stream, and as JSON: what was recorded, no LLM call, no row.
        async with stack.questions.stream(
            "POST", PATH, json=finished, headers=headers(company, "finished")
        ) as r:
            again = await read_all(r)
        assert again == first
        as_json = await stack.questions.post(
            PATH, json=finished, headers={**bearer(company), "Idempotency-Key": "finished"}
        )
        assert as_json.json() == first[-1].data

        # An interrupted stream: the retry gets the two questions delivered and billed.
        interrupted = body()
        read = 0
        async with stack.questions.stream(
            "POST", PATH, json=interrupted, headers=headers(company, "interrupted")
        ) as r:
            async for _ in events(r):
                read += 1
                if read == 2:
                    break
        rows = await eventually(
            lambda: generation_rows(stack, company), until=lambda r: len(r) == 2
        )
        calls = fake.request_count
        async with stack.questions.stream(
            "POST", PATH, json=interrupted, headers=headers(company, "interrupted")
        ) as r:
            retried = await read_all(r)
        assert [event.name for event in retried] == ["question", "question", "done"]
        assert retried[-1].data["generationId"] == str(rows[1]["id"])
        assert fake.request_count == calls
        assert len(await generation_rows(stack, company)) == 2
        assert [row["question_count"] for row in await usage_rows(stack, company, 2)] == [4, 2]


async def test_forty_concurrent_streams_at_a_limit_for_ten(
    dbs: ServiceDatabases, prefix: str, fake: FakeLlm, company: UUID
) -> None:
    fake.default = streamed(10, pace=0.1)
    async with streaming_stack(dbs, prefix, fake) as stack:
        await set_limit(stack, company, "1.0000")
        await limit_known(stack, company, "1.0000")
        # Each client leaves after its own number of questions (10: it reads to the end).
        # The response's head comes with the first question: every stream delivers one.
        leaves_after = [(number * 7) % 10 + 1 for number in range(40)]

        async def client(k: int) -> tuple[int, str, int]:
            payload = body()
            async with stack.questions.stream(
                "POST", PATH, json=payload, headers=headers(company)
            ) as r:
                if r.status_code != 200:
                    await r.aread()
                    return r.status_code, payload["draftJobId"], 0
                read = 0
                async for event in events(r):
                    if event.name != "question":
                        break
                    read += 1
                    if read == k:
                        break
                return 200, payload["draftJobId"], read

        results = await asyncio.gather(*(client(k) for k in leaves_after))

        assert sorted(status for status, _, _ in results).count(200) == 10
        assert [status for status, _, _ in results].count(402) == 30
        read = {draft: count for status, draft, count in results if status == 200}
        rows = await eventually(
            lambda: generation_rows(stack, company), until=lambda rows: len(rows) == len(read)
        )
        # Each stream is billed once, for what was written to its connection: at least what
        # its client read before leaving (more were in flight when it left), at most ten.
        billed = {row["draft_job_id"]: row["question_count"] for row in rows}
        assert billed.keys() == read.keys()
        assert all(read[draft] <= count <= 10 for draft, count in billed.items())
        total = sum((row["cost"] for row in rows), Decimal(0))
        assert total == Decimal(sum(billed.values())) / 100
        assert total <= Decimal("1.0000")
