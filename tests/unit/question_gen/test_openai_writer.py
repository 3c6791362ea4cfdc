"""The OpenAI writer's own rules: the request it sends, refused credentials, what a timeout is.

The SDK runs for real over an in-memory transport (no socket): what it would
send, and what the writer makes of what it gets back.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any, cast

import aiohttp
import httpx2
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.question_gen.generation import (
    RESPONSE_FORMAT,
    CallEnd,
    CallLog,
    Tokens,
    prompt_messages,
)
from services.question_gen.llm import (
    LlmCredentialsRefused,
    LlmUnavailable,
    OpenAIWriter,
    RequestBody,
    RetryPolicy,
    timed_out,
)

API_KEY = "sk-unit-secret"
MODEL = 'gpt-4o "mini"'
DESCRIPTION = 'Rust & Go, "quotes", \\ backslashes, émigré, 中文,\nnew lines and <<<markers>>>'


def sdk_client(handler: Callable[[httpx2.Request], httpx2.Response]) -> AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return AsyncOpenAI(
        api_key=API_KEY, base_url="http://llm.test/v1", max_retries=0, http_client=http
    )


def answer(request: httpx2.Request) -> httpx2.Response:
    content = json.dumps({"questions": [{"text": "Why?"}]})
    body = {"model": "m", "choices": [{"message": {"content": content}}], "usage": {}}
    return httpx2.Response(200, json=body)


def test_the_body_is_the_model_structured_outputs_and_the_messages() -> None:
    messages = prompt_messages(DESCRIPTION, 7)
    sent = json.loads(RequestBody(MODEL).encode(messages))
    assert sent == {"model": MODEL, "response_format": RESPONSE_FORMAT, "messages": messages}


async def test_the_body_is_what_the_sdks_create_would_send() -> None:
    seen: list[dict[str, Any]] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append({"path": request.url.path, "body": json.loads(request.content)})
        seen[-1]["content_type"] = request.headers["content-type"]
        return answer(request)

    client = sdk_client(record)
    messages = prompt_messages(DESCRIPTION, 3)
    await client.chat.completions.create(
        model=MODEL,
        messages=cast("list[ChatCompletionMessageParam]", messages),
        response_format=cast("ResponseFormatJSONSchema", RESPONSE_FORMAT),
    )
    writer = OpenAIWriter(client, MODEL, timeout=5, retries=RetryPolicy(max_retries=0))
    await writer.write(DESCRIPTION, 3)

    by_create, by_writer = seen
    assert by_writer == by_create
    assert by_writer["path"] == "/v1/chat/completions"
    assert by_writer["content_type"] == "application/json"


def refused_count(status: int) -> float:
    labels = {"model": "gpt-4o", "status": str(status)}
    return REGISTRY.get_sample_value("llm_credentials_refused_total", labels) or 0.0


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_raised_counted_and_logged_once(status: int) -> None:
    requests: list[httpx2.Request] = []

    def refuse(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return httpx2.Response(status, json={"error": {"message": "Incorrect API key"}})

    writer = OpenAIWriter(
        sdk_client(refuse), "gpt-4o", timeout=5, retries=RetryPolicy(max_retries=3)
    )
    before = refused_count(status)
    with capture_logs() as logs, pytest.raises(LlmCredentialsRefused) as raised:
        await writer.write(DESCRIPTION, 3)

    assert raised.value.status == status
    assert len(requests) == 1  # never retried: a retry cannot fix a key
    assert refused_count(status) == before + 1
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert len(errors) == 1
    assert errors[0]["event"] == "the LLM provider refused our credentials"
    assert errors[0]["status"] == status
    assert API_KEY not in str(errors[0])  # the key itself is never logged


def caused_by(*chain: BaseException) -> BaseException:
    """The first exception, raised from the second, raised from the third..."""
    for outer, inner in itertools.pairwise(chain):
        outer.__cause__ = inner
    return chain[0]


def sdk_timeout(*causes: BaseException) -> BaseException:
    request = httpx2.Request("POST", "http://llm.test/v1/chat/completions")
    return caused_by(openai.APITimeoutError(request), httpx2.ConnectTimeout("x"), *causes)


def test_a_refused_or_dropped_connection_is_not_a_timeout() -> None:
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("llm.test", 80, False, False, None, None, None),
        OSError(111, "Connection refused"),
    )
    assert not timed_out(sdk_timeout(refused))
    assert not timed_out(sdk_timeout(aiohttp.ServerDisconnectedError()))


def test_timeouts_are_timeouts() -> None:
    assert timed_out(sdk_timeout(aiohttp.SocketTimeoutError()))
    assert timed_out(sdk_timeout(aiohttp.ConnectionTimeoutError()))
    assert timed_out(sdk_timeout())
    assert timed_out(TimeoutError())


# Streamed: the same request streamed, questions delivered as they close.


def sse(*payloads: object) -> bytes:
    return b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)


def content_chunks(content: str, size: int = 5) -> list[object]:
    return [
        {"model": "m-1", "choices": [{"index": 0, "delta": {"content": content[i : i + size]}}]}
        for i in range(0, len(content), size)
    ]


QUESTIONS_CONTENT = json.dumps({"questions": [{"text": t} for t in ("A?", "B?", "A?", "C?")]})
USAGE_CHUNK = {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 20}}


def streaming(*bodies: bytes | int) -> tuple[AsyncOpenAI, list[dict[str, Any]]]:
    """An SDK client whose server answers each request with the next body (or status)."""
    answers = list(bodies)
    seen: list[dict[str, Any]] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        body = answers.pop(0)
        if isinstance(body, int):
            return httpx2.Response(body, json={"error": {"message": "no"}})
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return sdk_client(handle), seen


async def test_a_stream_asks_for_usage_and_delivers_distinct_questions() -> None:
    client, seen = streaming(
        sse(*content_chunks(QUESTIONS_CONTENT), USAGE_CHUNK) + b"data: [DONE]\n\n"
    )
    writer = OpenAIWriter(client, MODEL, timeout=5, retries=RetryPolicy(max_retries=0))
    delivered: list[str] = []
    calls: CallLog = []

    async def deliver(question: str) -> None:
        delivered.append(question)

    answer = await writer.stream(DESCRIPTION, 3, deliver, calls)

    assert delivered == answer.questions == ["A?", "B?", "C?"]
    assert answer.tokens == Tokens(prompt=50, completion=20, source="provider")
    assert answer.model == "m-1"
    [call] = calls
    assert (call.end, call.tokens, call.model) == (CallEnd.ANSWERED, answer.tokens, "m-1")
    messages = prompt_messages(DESCRIPTION, 3)
    assert seen == [
        {
            "model": MODEL,
            "response_format": RESPONSE_FORMAT,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": messages,
        }
    ]


async def test_a_stream_is_retried_only_while_nothing_was_delivered() -> None:
    broken = sse(*content_chunks(QUESTIONS_CONTENT)[:6], {"error": {"message": "overloaded"}})
    client, seen = streaming(500, sse(*content_chunks(QUESTIONS_CONTENT)), broken)
    writer = OpenAIWriter(
        client, MODEL, timeout=5, retries=RetryPolicy(max_retries=3, initial_delay=0)
    )
    calls: CallLog = []

    async def deliver(question: str) -> None:
        pass

    first = await writer.stream(DESCRIPTION, 3, deliver, calls)
    assert first.questions == ["A?", "B?", "C?"]
    assert [call.end for call in calls] == [CallEnd.FAILED, CallEnd.ANSWERED]
    # No usage in that stream: the tokens were counted.
    assert calls[1].tokens.source == "estimated"
    assert calls[1].tokens.completion > 0

    delivered: list[str] = []

    async def keep(question: str) -> None:
        delivered.append(question)

    calls.clear()
    with pytest.raises(LlmUnavailable):
        await writer.stream(DESCRIPTION, 3, keep, calls)
    assert delivered == ["A?"]  # delivered stays delivered, and is not asked for again
    assert len(seen) == 3
    assert [call.end for call in calls] == [CallEnd.FAILED]
