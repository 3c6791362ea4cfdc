"""An OpenAI-compatible Chat Completions server for tests, on loopback.

It runs uvicorn in a thread of its own with its own event loop, so its answers
and delays do not depend on the service's loop: a service that blocks its loop
cannot hide it by also blocking the fake. Each test scripts it: replies queued
in order (`enqueue`), then a default reply for every request after; it records
every request body it received.

A `StreamReply` answers a request with `"stream": true` as OpenAI does: server-sent
`chat.completion.chunk` events, a few per question at a chosen pace, the usage
chunk last when `stream_options.include_usage` asks for it, then `[DONE]`; it can
fail after N questions. Each stream is recorded (`streams`): how many questions
it had written, whether it finished, whether the client closed the connection
first. Asked without `"stream"`, a `StreamReply` answers the same questions whole.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

DEFAULT_MODEL = "gpt-4o-2024-08-06"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, body (bytes as is, anything else as JSON), headers, delay."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """A request the fake received: its JSON body and its headers (lower-case names)."""

    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def user_message(self) -> str:
        return str(self.body["messages"][-1]["content"])


def completion(
    content: str | None,
    *,
    model: str = DEFAULT_MODEL,
    prompt_tokens: int = 321,
    completion_tokens: int = 123,
    refusal: str | None = None,
    delay: float = 0.0,
) -> Reply:
    """A Chat Completions answer whose first choice says `content`."""
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return Reply(body=body, delay=delay)


def questions(count: int, **options: Any) -> Reply:
    """A well-formed answer with `count` distinct questions."""
    texts = [{"text": f"Question {number}: what did you learn?"} for number in range(1, count + 1)]
    return completion(json.dumps({"questions": texts}), **options)


def rate_limited(*, retry_after_ms: int = 10, retry_after: str = "1") -> Reply:
    """429 as OpenAI sends it. The SDK and the service prefer `retry-after-ms`."""
    headers = {"retry-after-ms": str(retry_after_ms), "retry-after": retry_after}
    error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
    return Reply(status=429, body={"error": error}, headers=headers)


def failure(status: int = 500, **headers: str) -> Reply:
    error = {"message": "The server had an error", "type": "server_error", "code": None}
    return Reply(status=status, body={"error": error}, headers=dict(headers))


def question_texts(count: int) -> list[str]:
    return [f"Question {number}: what did you learn?" for number in range(1, count + 1)]


@dataclass(frozen=True)
class StreamReply:
    """A streamed answer: `texts` written `chunks_per_question` pieces a question, `pace`
    seconds a question (after `first_delay`); after `fail_after` questions, the
    connection is dropped (`failure="drop"`) or an error event is sent (`"event"`)."""

    texts: list[str]
    model: str = DEFAULT_MODEL
    prompt_tokens: int = 321
    completion_tokens: int = 123
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    first_delay: float = 0.0
    pace: float = 0.0
    chunks_per_question: int = 4
    fail_after: int | None = None
    failure: Literal["drop", "event"] = "drop"
    usage: bool = True

    @property
    def content(self) -> str:
        return json.dumps({"questions": [{"text": text} for text in self.texts]})

    def whole(self) -> Reply:
        """The same answer, not streamed."""
        reply = completion(
            self.content,
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )
        return Reply(body={**reply.body, "usage": self.usage_body()})

    def usage_body(self) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage


def streamed(count: int = 10, **options: Any) -> StreamReply:
    """A streamed answer with `count` distinct questions."""
    return StreamReply(texts=question_texts(count), **options)


@dataclass
class StreamRecord:
    """What the fake did with one streamed request (written from the fake's thread)."""

    questions_written: int = 0
    finished: bool = False
    client_closed: bool = False
    started_at: float = field(default_factory=time.monotonic)
    first_question_at: float | None = None


def _chunk(reply: StreamReply, delta: dict[str, Any] | None, **fields: Any) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": reply.model,
        "system_fingerprint": "fp_test",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        **fields,
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _pieces(text: str, count: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, count)))
    return [text[start : start + size] for start in range(0, len(text), size)]


class FakeLlm:
    """`POST {url}/chat/completions` answers as scripted; `requests` is what it received.

    A request is counted when it arrives, before its reply's delay.
    """

    def __init__(self, default: Reply | StreamReply | None = None) -> None:
        self.default: Reply | StreamReply = default or questions(10)
        self._queue: deque[Reply | StreamReply] = deque()
        self._requests: list[Received] = []
        self._streams: list[StreamRecord] = []
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        app = Starlette(routes=[Route("/v1/chat/completions", self._answer, methods=["POST"])])
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", backlog=2048
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="fake-llm", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # Scripting, from the test's thread.

    def enqueue(self, *replies: Reply | StreamReply) -> None:
        """Answer the next requests with these, in order; then the default again."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    @property
    def streams(self) -> list[StreamRecord]:
        with self._lock:
            return list(self._streams)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    # Serving, in the fake's own thread and loop.

    def _run(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            await self._server.serve(sockets=[self._socket])

        asyncio.run(serve())

    async def _answer(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = {"unreadable": True}
        received = Received(body, {name.lower(): value for name, value in request.headers.items()})
        with self._lock:
            self._requests.append(received)
            reply = self._queue.popleft() if self._queue else self.default
        if isinstance(reply, StreamReply):
            if body.get("stream") is not True:
                reply = reply.whole()
            else:
                record = StreamRecord()
                with self._lock:
                    self._streams.append(record)
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return StreamingResponse(
                    self._stream(reply, record, usage=usage), media_type="text/event-stream"
                )
        if reply.delay > 0:
            assert self._stopping is not None
            # Wakes early when the fake stops, so that shutdown never waits for a delay.
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), reply.delay)
        content = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        media_type = None if isinstance(reply.body, bytes) else "application/json"
        return Response(content, reply.status, headers=reply.headers, media_type=media_type)

    async def _stream(
        self, reply: StreamReply, record: StreamRecord, *, usage: bool
    ) -> AsyncIterator[bytes]:
        try:
            yield _chunk(reply, {"role": "assistant", "content": ""})
            await self._pause(reply.first_delay)
            texts = reply.texts
            yield _chunk(reply, {"content": '{"questions": ['})
            for index, text in enumerate(texts):
                if reply.fail_after is not None and index == reply.fail_after:
                    if reply.failure == "event":
                        error = {"message": "The server had an error", "type": "server_error"}
                        yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
                        return
                    raise ConnectionAbortedError("the fake drops the stream")
                item = json.dumps({"text": text}) + (", " if index < len(texts) - 1 else "")
                pieces = _pieces(item, reply.chunks_per_question)
                for piece in pieces:
                    await self._pause(reply.pace / len(pieces))
                    yield _chunk(reply, {"content": piece})
                record.questions_written = index + 1
                if record.first_question_at is None:
                    record.first_question_at = time.monotonic()
            yield _chunk(reply, {"content": "]}"})
            yield _chunk(reply, {}, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
            if usage and reply.usage:
                yield _chunk(reply, None, usage=reply.usage_body())
            yield b"data: [DONE]\n\n"
            record.finished = True
        except (asyncio.CancelledError, GeneratorExit):
            record.client_closed = True
            raise

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            assert self._stopping is not None
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    # Lifetime.

    def start(self) -> FakeLlm:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake LLM did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@contextmanager
def running_fake_llm(default: Reply | StreamReply | None = None) -> Iterator[FakeLlm]:
    fake = FakeLlm(default).start()
    try:
        yield fake
    finally:
        fake.stop()
