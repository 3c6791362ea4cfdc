"""Generating questions: ask the LLM outside any transaction, then record and publish at once."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import structlog

from contracts.events import QuestionsGenerated
from services.question_gen import store
from services.question_gen.budgets.guard import BudgetGuard, Reservation
from services.question_gen.call_events import call_events
from services.question_gen.config import Settings
from services.question_gen.generation import Answer, CallLog
from services.question_gen.llm import QuestionWriter
from services.question_gen.metrics import observe_llm_call
from services.question_gen.schemas import (
    GenerateQuestionsRequest,
    GenerateQuestionsResponse,
    Question,
    TokenUsage,
)
from services.servicekit.db import Connection
from services.servicekit.idempotency import Idempotent
from services.servicekit.logs import current_correlation_id

log = structlog.get_logger(__name__)


class GenerationNotStarted(Exception):
    """The request could not reserve its budget (or get a connection) before its deadline.

    The LLM was not called and nothing was billed; a retry may find the service less busy.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"no database connection or budget reservation within {seconds:g} s; "
            "the LLM was not called and nothing was billed"
        )
        self.seconds = seconds


def generation_event(
    company_id: UUID, request: GenerateQuestionsRequest, answer: Answer
) -> QuestionsGenerated:
    return QuestionsGenerated(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=company_id,
        job_id=request.job_id,
        draft_job_id=request.draft_job_id,
        prompt_tokens=answer.tokens.prompt,
        completion_tokens=answer.tokens.completion,
        total_tokens=answer.tokens.total,
        question_count=len(answer.questions),
        model=answer.model,
        cached_prompt_tokens=answer.tokens.cached_prompt,
        reasoning_tokens=answer.tokens.reasoning,
        usage_source=answer.tokens.source,
    )


def generation_response(event: QuestionsGenerated, answer: Answer) -> GenerateQuestionsResponse:
    return GenerateQuestionsResponse(
        generation_id=event.event_id,
        questions=[Question(text=text) for text in answer.questions],
        question_count=event.question_count,
        usage=TokenUsage(
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
            total_tokens=event.total_tokens,
        ),
        model=event.model,
        job_id=event.job_id,
        draft_job_id=event.draft_job_id,
    )


@dataclass
class QuestionGenerator:
    pool: asyncpg.Pool
    writer: QuestionWriter
    settings: Settings
    budget: BudgetGuard

    @property
    def replay(self) -> Idempotent[GenerateQuestionsResponse]:
        return Idempotent(
            self.pool,
            GenerateQuestionsResponse,
            wait_seconds=self.settings.idempotency_wait_seconds,
            # A claim older than the longest a request can take before its answer is
            # written (its waits before the LLM, then the LLM call, whose deadline covers
            # its retries) belongs to a dead request. Should a live one be taken over all
            # the same, its own write rolls back (`ClaimLost`) and it answers the other's.
            stale_after_seconds=self.settings.claim_stale_seconds,
        )

    async def generate(
        self, company_id: UUID, request: GenerateQuestionsRequest, idempotency_key: str | None
    ) -> GenerateQuestionsResponse:
        """The questions, recorded and billed once; on an idempotent retry the first answer.

        Within the company's budget and, in `credit_only`, its credits: its worst case is
        reserved before the LLM is called (`BudgetExceeded` or `CreditsExhausted` if it
        does not fit), and settled with the generation.
        Everything it waits for before the LLM call (a connection, its reservation)
        has until its deadline, `wait_before_llm_seconds` from when it owns its key:
        then `GenerationNotStarted`.
        """

        held: list[Reservation] = []
        recorded: list[UUID] = []
        calls: CallLog = []

        async def ask() -> tuple[Answer, Reservation | None]:
            reservation = await self.reserve(company_id, request)
            if reservation is not None:
                held.append(reservation)
            return await self._ask(request, calls), reservation

        async def record(
            conn: Connection, asked: tuple[Answer, Reservation | None]
        ) -> GenerateQuestionsResponse:
            answer, reservation = asked
            response = await self.record(
                conn, company_id, request, answer, reservation, calls=calls
            )
            recorded.append(response.generation_id)
            return response

        try:
            response = await self.replay.run_slow(company_id, idempotency_key, request, ask, record)
        except BaseException:
            # Nothing was recorded: the reservation goes back (once the request's own
            # connection is back in the pool: a second one is never awaited while holding it).
            await asyncio.shield(self.record_unbilled(company_id, calls))
            for reservation in held:
                await self.release(reservation)
            raise
        if not recorded or recorded[-1] != response.generation_id:
            # The answer is another request's with this key (it took ours over): what this
            # one recorded rolled back, its calls were billed by nobody, and its
            # reservation settled nothing.
            await self.record_unbilled(company_id, calls)
            for reservation in held:
                await self.release(reservation)
        return response

    async def reserve(
        self, company_id: UUID, request: GenerateQuestionsRequest
    ) -> Reservation | None:
        """Hold the request's worst case before the LLM is called (`BudgetExceeded` or
        `CreditsExhausted` if it does not fit); the JSON call and the stream alike.
        Within `wait_before_llm_seconds` (a connection and the reservation): else
        `GenerationNotStarted`."""
        wait = self.settings.wait_before_llm_seconds
        try:
            async with asyncio.timeout(wait):
                return await self.budget.reserve(company_id, request.number_of_questions)
        except TimeoutError as exc:
            raise GenerationNotStarted(wait) from exc

    async def release(self, reservation: Reservation) -> None:
        """Nothing was recorded: the reservation goes back."""
        await self.budget.release(reservation)

    async def record_unbilled(self, company_id: UUID, calls: CallLog) -> None:
        """The calls no generation billed, each published on its own, in a short
        transaction of its own. Never raises: the failure that led here is the answer."""
        events = call_events(company_id, calls)
        if not events:
            return
        try:
            async with self.pool.acquire() as conn:
                await store.record_calls(conn, events, correlation_id=current_correlation_id())
        except Exception:
            log.exception(
                "calls to the LLM could not be recorded",
                company_id=str(company_id),
                calls=len(events),
            )

    async def _ask(self, request: GenerateQuestionsRequest, calls: CallLog) -> Answer:
        with observe_llm_call(self.writer.model) as call:
            answer = await self.writer.write(
                request.job_description, request.number_of_questions, calls
            )
            call.record(answer)
        return answer

    async def record(
        self,
        conn: Connection,
        company_id: UUID,
        request: GenerateQuestionsRequest,
        answer: Answer,
        reservation: Reservation | None,
        *,
        calls: CallLog,
        stream_end: str | None = None,
    ) -> GenerateQuestionsResponse:
        """The generation row and its event, settling its reservation: what is billed.

        With it, in the caller's transaction, one `LlmCallFinished` for each of `calls`:
        the last one billed by this generation, any before it (retries) unbilled.
        """
        event = generation_event(company_id, request, answer)
        # Every row carries its cost, counted in its period whether or not the company has a
        # limit; under a limit it also settles its reservation. Written with the row and its
        # event in one statement (`HoldLost`, nothing written, if the reservation is gone).
        settles = await self.budget.settlement(conn, reservation, event)
        await store.record_generation(
            conn,
            event,
            correlation_id=current_correlation_id(),
            settles=settles,
            stream_end=stream_end,
        )
        await store.record_calls(
            conn,
            call_events(company_id, calls, generation_id=event.event_id),
            correlation_id=current_correlation_id(),
        )
        log.info(
            "questions generated",
            generation_id=str(event.event_id),
            company_id=str(company_id),
            job_id=str(event.job_id) if event.job_id else None,
            draft_job_id=event.draft_job_id,
            questions=event.question_count,
            model=event.model,
        )
        return generation_response(event, answer)
