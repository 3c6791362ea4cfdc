"""Generating questions: ask the LLM outside any transaction, then record and publish at once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from contracts.events import QuestionsGenerated
from services.question_gen import store
from services.question_gen.config import Settings
from services.question_gen.generation import Answer
from services.question_gen.llm import QuestionWriter
from services.question_gen.metrics import observe_llm_call
from services.question_gen.schemas import (
    GenerateQuestionsRequest,
    GenerateQuestionsResponse,
    Question,
    TokenUsage,
)
from services.servicekit import idempotency
from services.servicekit.idempotency import ClaimState
from services.servicekit.logs import current_correlation_id

log = structlog.get_logger(__name__)


def generation_event(
    company_id: UUID, request: GenerateQuestionsRequest, answer: Answer
) -> QuestionsGenerated:
    return QuestionsGenerated(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=company_id,
        job_id=request.job_id,
        draft_job_id=request.draft_job_id,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        total_tokens=answer.total_tokens,
        question_count=len(answer.questions),
        model=answer.model,
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

    @property
    def _stale_after(self) -> float:
        # A claim older than the longest an LLM call can take (its deadline covers its
        # retries) belongs to a dead request.
        return self.settings.llm_timeout_seconds + 30

    async def generate(
        self, company_id: UUID, request: GenerateQuestionsRequest, idempotency_key: str | None
    ) -> GenerateQuestionsResponse | dict[str, Any]:
        """The response, or on an idempotent retry the first response exactly as stored."""
        if idempotency_key is None:
            return await self._generate(company_id, request, None)
        fingerprint = idempotency.request_fingerprint(
            request.model_dump(mode="json", exclude={"company_id"})
        )
        outcome = await idempotency.await_outcome(
            self.pool,
            company_id,
            idempotency_key,
            fingerprint,
            timeout=self.settings.idempotency_wait_seconds,
            stale_after_seconds=self._stale_after,
        )
        if outcome.state is ClaimState.REPLAY:
            stored: dict[str, Any] = outcome.response
            return stored
        try:
            return await self._generate(company_id, request, idempotency_key)
        except BaseException:
            # Nothing was recorded: give the key back so that a retry asks the LLM again.
            await self._release(company_id, idempotency_key)
            raise

    async def _release(self, company_id: UUID, idempotency_key: str) -> None:
        try:
            async with self.pool.acquire() as conn:
                await idempotency.release(conn, company_id, idempotency_key)
        except Exception:
            # The request's own error matters more; the claim goes stale and is taken over.
            log.warning("idempotency key not released", exc_info=True)

    async def _generate(
        self, company_id: UUID, request: GenerateQuestionsRequest, idempotency_key: str | None
    ) -> GenerateQuestionsResponse:
        with observe_llm_call(self.writer.model) as call:
            answer = await self.writer.write(request.job_description, request.number_of_questions)
            call.record(answer)
        event = generation_event(company_id, request, answer)
        response = generation_response(event, answer)
        correlation_id = current_correlation_id()
        if idempotency_key is None:
            async with self.pool.acquire() as conn:  # one statement: atomic by itself
                await store.record_generation(conn, event, correlation_id=correlation_id)
        else:
            async with self.pool.acquire() as conn, conn.transaction():
                await store.record_generation(conn, event, correlation_id=correlation_id)
                await idempotency.complete(
                    conn,
                    company_id,
                    idempotency_key,
                    200,
                    response.model_dump(mode="json", by_alias=True),
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
        return response
