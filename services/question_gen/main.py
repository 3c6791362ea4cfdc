"""Composition root of the question service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.question_gen.api import router
from services.question_gen.config import Settings
from services.question_gen.generation import MalformedAnswer
from services.question_gen.handlers import QuestionGenerator
from services.question_gen.llm import (
    LlmTimeout,
    LlmUnavailable,
    OfflineWriter,
    OpenAIWriter,
    QuestionWriter,
)
from services.servicekit.http import build_app
from services.servicekit.logs import configure_logging
from services.servicekit.problems import problem_response
from services.servicekit.runtime import publisher_runtime

SERVICE = "question_gen"


def make_writer(settings: Settings) -> QuestionWriter:
    if not settings.uses_openai:
        return OfflineWriter()
    assert settings.openai_api_key is not None
    return OpenAIWriter.from_settings(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,  # never empty: see Settings
        model=settings.openai_model,
        timeout=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        retry_delay=settings.llm_retry_delay_seconds,
    )


async def _on_unavailable(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LlmUnavailable)
    return problem_response(
        503, f"{exc}; nothing was billed", headers={"Retry-After": str(exc.retry_after)}
    )


async def _on_timeout(_: Request, exc: Exception) -> JSONResponse:
    return problem_response(504, f"{exc}; nothing was billed")


async def _on_malformed(_: Request, exc: Exception) -> JSONResponse:
    return problem_response(502, f"{exc}; nothing was billed")


def create_app(
    settings: Settings | None = None, *, writer: QuestionWriter | None = None
) -> FastAPI:
    settings = settings or Settings()
    configure_logging(SERVICE, settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with publisher_runtime(settings, app_id=SERVICE) as runtime:
            question_writer = writer or make_writer(settings)
            app.state.runtime = runtime
            app.state.generator = QuestionGenerator(runtime.pool, question_writer, settings)
            try:
                yield
            finally:
                await question_writer.close()

    app = build_app(
        title="Question service",
        description="Generates interview questions with an LLM; every question is billed once.",
        settings=settings,
        lifespan=lifespan,
        routers=[router],
        readiness=lambda request: request.app.state.runtime.readiness(),
    )
    app.add_exception_handler(LlmUnavailable, _on_unavailable)
    app.add_exception_handler(LlmTimeout, _on_timeout)
    app.add_exception_handler(MalformedAnswer, _on_malformed)
    return app
