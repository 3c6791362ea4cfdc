"""Composition root of the question service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.question_gen.api import ERRORS, router
from services.question_gen.budgets.consume import BillingEventsConsumer
from services.question_gen.budgets.guard import BudgetGuard
from services.question_gen.config import Settings
from services.question_gen.handlers import QuestionGenerator
from services.question_gen.llm import OpenAIWriter, QuestionWriter
from services.question_gen.offline import OfflineWriter
from services.question_gen.streaming import QuestionStreams
from services.servicekit.http import service_app
from services.servicekit.runtime import PublisherRuntime, publisher_runtime
from services.servicekit.tracing import Tracing

SERVICE = "question_gen"


def make_writer(settings: Settings, tracing: Tracing | None = None) -> QuestionWriter:
    if not settings.uses_openai:
        return OfflineWriter(settings.offline_seconds_per_question)
    assert settings.openai_api_key is not None
    return OpenAIWriter.from_settings(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,  # never empty: see Settings
        model=settings.openai_model,
        timeout=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        retry_delay=settings.llm_retry_delay_seconds,
        tracer=tracing.tracer(__name__) if tracing is not None and tracing.enabled else None,
    )


def create_app(
    settings: Settings | None = None, *, writer: QuestionWriter | None = None
) -> FastAPI:
    settings = settings or Settings()
    tracing = Tracing.from_environment(SERVICE)

    @asynccontextmanager
    async def generating(app: FastAPI, runtime: PublisherRuntime) -> AsyncIterator[None]:
        question_writer = writer or make_writer(settings, tracing)
        budget = BudgetGuard(
            runtime.pool,
            hold_seconds=settings.budget_hold,
            refresh_seconds=settings.budget_refresh_seconds,
        )
        billing_events = BillingEventsConsumer(
            runtime.pool, runtime.broker, runtime.topology, on_change=budget.forget
        )
        generator = QuestionGenerator(runtime.pool, question_writer, settings, budget)
        streams = QuestionStreams(generator, ERRORS)
        app.state.generator = generator
        app.state.streams = streams
        if isinstance(question_writer, OpenAIWriter):
            question_writer.start()
        budget.start()
        billing_events.start()
        try:
            yield
        finally:
            # Streams still running end now and are recorded before anything closes.
            await streams.drain()
            await billing_events.stop()
            await budget.stop()
            await question_writer.close()

    return service_app(
        service=SERVICE,
        title="Question service",
        description="Generates interview questions with an LLM; every question is billed once.",
        settings=settings,
        runtime=lambda: publisher_runtime(settings, app_id=SERVICE, tracing=tracing),
        routers=[router],
        errors=ERRORS,
        on_start=generating,
        tracing=tracing,
    )
