"""The LLM call as a GenAI client span, kept by the SDK's in-memory exporter: the
attributes OpenTelemetry's GenAI conventions name, one span per request, failures told."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from services.question_gen.generation import Tokens
from services.question_gen.llm import LlmUnavailable, OpenAIWriter, RetryPolicy
from services.question_gen.llm_spans import request_attributes, response_attributes
from tests.unit.question_gen.test_openai_writer import DESCRIPTION, sdk_client

MODEL = "gpt-4o"
ANSWERED_BY = "gpt-4o-2024-08-06"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def answered(request: httpx2.Request) -> httpx2.Response:
    content = json.dumps({"questions": [{"text": "Why?"}, {"text": "How?"}]})
    body = {
        "model": ANSWERED_BY,
        "choices": [{"message": {"content": content}}],
        "usage": {"prompt_tokens": 321, "completion_tokens": 45, "total_tokens": 366},
    }
    return httpx2.Response(200, json=body)


def only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def test_pure_attributes_name_the_call_and_its_cost() -> None:
    assert request_attributes(MODEL, "api.openai.com", 443) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.output.type": "json",
        "server.address": "api.openai.com",
        "server.port": 443,
    }
    assert "server.port" not in request_attributes(MODEL, "llm.test", None)
    assert response_attributes(ANSWERED_BY, Tokens(prompt=10, completion=3)) == {
        "gen_ai.response.model": ANSWERED_BY,
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 3,
    }


async def test_an_answered_call_is_a_client_span_with_the_genai_attributes(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    writer = OpenAIWriter(
        sdk_client(answered),
        MODEL,
        timeout=5,
        retries=RetryPolicy(max_retries=0),
        tracer=provider.get_tracer("test"),
    )
    await writer.write(DESCRIPTION, 2)

    span = only(exporter)
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": ANSWERED_BY,
        "gen_ai.usage.input_tokens": 321,
        "gen_ai.usage.output_tokens": 45,
        "gen_ai.output.type": "json",
        "server.address": "llm.test",
    }
    assert span.status.status_code is StatusCode.UNSET


async def test_each_attempt_is_a_span_and_a_failure_says_its_type(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    replies = iter([httpx2.Response(503, json={"error": {"message": "busy"}})])

    def busy_then_answered(request: httpx2.Request) -> httpx2.Response:
        return next(replies, None) or answered(request)

    writer = OpenAIWriter(
        sdk_client(busy_then_answered),
        MODEL,
        timeout=5,
        retries=RetryPolicy(max_retries=1, initial_delay=0.01),
        tracer=provider.get_tracer("test"),
    )
    await writer.write(DESCRIPTION, 2)

    failed, succeeded = exporter.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "503"
    assert (failed.attributes or {})["gen_ai.usage.input_tokens"] == 0  # refused: not charged
    assert "error.type" not in (succeeded.attributes or {})
    assert (succeeded.attributes or {})["gen_ai.usage.output_tokens"] == 45


async def test_a_call_that_fails_for_good_ends_its_span_in_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    writer = OpenAIWriter(
        sdk_client(lambda _request: httpx2.Response(500, json={})),
        MODEL,
        timeout=5,
        retries=RetryPolicy(max_retries=0),
        tracer=provider.get_tracer("test"),
    )
    with pytest.raises(LlmUnavailable):
        await writer.write(DESCRIPTION, 2)

    span = only(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.end_time is not None
