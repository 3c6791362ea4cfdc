"""The question writer that asks an LLM, through the official OpenAI SDK.

With no API key set, `offline.OfflineWriter` answers instead.

Failures are told apart here and nowhere else: `LlmUnavailable` (rate limited,
unreachable, 5xx, after bounded retries) answers 503 with `Retry-After`,
`LlmCredentialsRefused` (401, 403: our configuration's fault) 503, `LlmTimeout`
504, `MalformedAnswer` 502. None of them is billed.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx2
import openai
import structlog
from openai import AsyncOpenAI, DefaultAioHttpClient
from opentelemetry.trace import Span, Tracer

from services.question_gen.generation import (
    RESPONSE_FORMAT,
    Answer,
    CallEnd,
    CallLog,
    LlmCall,
    MalformedAnswer,
    QuestionSet,
    Tokens,
    call_tokens,
    model_name,
    prompt_messages,
    read_completion,
)
from services.question_gen.llm_spans import LlmSpans, record_response
from services.question_gen.metrics import LLM_CREDENTIALS_REFUSED, LLM_RETRIES
from services.question_gen.streamed_answer import StreamedCompletion, StreamFailed
from services.question_gen.tokens import Tokenizer
from services.servicekit.retry_after import server_retry_after

# What the LLM's server may answer and still answer well a moment later.
RETRYABLE_STATUSES = frozenset({408, 409, 429})
# The provider refused our API key or what it may do: our configuration's fault.
CREDENTIALS_REFUSED_STATUSES = frozenset({401, 403})
CHAT_COMPLETIONS_PATH = "/chat/completions"
# Connections to the LLM: one per call in flight, kept between calls. Far above what
# one process has in flight; bounded so that a runaway cannot exhaust file descriptors.
MAX_CONNECTIONS = 4096
KEEPALIVE_SECONDS = 30.0

log = structlog.get_logger(__name__)


class LlmUnavailable(Exception):
    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class LlmTimeout(Exception):
    pass


class LlmCredentialsRefused(Exception):
    """The provider refused our API key (401) or its permissions (403).

    A fault of our configuration, not of the request nor of the provider's health:
    retrying does not help, and operators must hear of it at once.
    """

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


# Takes one question as soon as it is written (the stream writes it to the client).
Deliver = Callable[[str], Awaitable[None]]


class QuestionWriter(Protocol):
    model: str

    async def write(self, description: str, count: int, calls: CallLog | None = None) -> Answer: ...

    async def stream(
        self, description: str, count: int, deliver: Deliver, calls: CallLog | None = None
    ) -> Answer: ...

    async def close(self) -> None: ...


class _Retryable(Exception):
    """A failure another attempt may not have."""

    def __init__(
        self, failure: LlmUnavailable, retry_after: float | None, reason: str, cause: Exception
    ) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.retry_after = retry_after
        self.reason = reason
        self.cause = cause


# A call the provider refused before doing any work: it charges nothing for it.
NO_TOKENS = Tokens(prompt=0, completion=0)


def _log_call(calls: CallLog | None, model: str, end: CallEnd, tokens: Tokens, span: Span) -> None:
    """The call in the generation's log, and its model and tokens on its span."""
    if calls is not None:
        calls.append(LlmCall(model=model, end=end, tokens=tokens))
    record_response(span, model, tokens)


async def _deliver_new(found: QuestionSet, text: str, deliver: Deliver) -> None:
    question = found.add(text)
    if question is not None:
        await deliver(question)


class RequestBody:
    """The Chat Completions request body: its fixed part serialized once, per call the prompt.

    The same JSON `chat.completions.create` sends: the model, Structured Outputs
    with the questions' schema, the messages.
    """

    def __init__(self, model: str, *, stream: bool = False) -> None:
        fields: dict[str, object] = {"model": model, "response_format": RESPONSE_FORMAT}
        if stream:  # the provider's usage arrives as the stream's last chunk
            fields |= {"stream": True, "stream_options": {"include_usage": True}}
        fixed = json.dumps(fields)
        self._head = fixed[:-1] + ', "messages": '  # the object, left open for the messages

    def encode(self, messages: list[dict[str, str]]) -> bytes:
        return (self._head + json.dumps(messages) + "}").encode()


def timed_out(exc: BaseException) -> bool:
    """Whether a timeout the SDK reports is one.

    The SDK's aiohttp transport reports a refused or dropped connection as a
    connect timeout; the chain of causes says which it was.
    """
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
            return False
        cause = cause.__cause__
    return True


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries, exponential backoff with jitter; the server's `Retry-After` wins."""

    max_retries: int
    initial_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, retries_taken: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        backoff = min(self.initial_delay * 2.0**retries_taken, self.max_delay)
        return backoff * (1 - 0.25 * random.random())


class OpenAIWriter:
    """Chat Completions with Structured Outputs, through the official SDK.

    The whole call, retries included, is bounded by `timeout`: the SDK's own
    retry loop has no overall deadline (it retries timeouts, and sleeps through
    a `Retry-After` of up to two minutes), so the SDK makes single attempts and
    the retries are ours. A wait that would not fit before the deadline is not
    slept through: the client gets a 503 whose `Retry-After` says how long.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        timeout: float,
        retries: RetryPolicy,
        tracer: Tracer | None = None,
    ) -> None:
        self._client = client
        self.model = model
        self._spans = LlmSpans(tracer, model, client.base_url.host, client.base_url.port)
        self._body = RequestBody(model)
        self._stream_body = RequestBody(model, stream=True)
        self._timeout = timeout
        self._retries = retries
        self._counter = Tokenizer(model)
        self._loading: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Load what counting tokens needs in a thread, while the service starts serving."""
        self._loading = asyncio.ensure_future(asyncio.to_thread(self._counter.load))

    @classmethod
    def from_settings(
        cls,
        *,
        api_key: str,
        base_url: str,
        model: str,
        timeout: float,
        max_retries: int,
        retry_delay: float = 0.5,
        tracer: Tracer | None = None,
    ) -> OpenAIWriter:
        # aiohttp's pool hands out an idle connection in constant time, where httpx's
        # checks every pooled connection's socket on every request: with hundreds of
        # calls in flight that scan was most of the client's CPU (docs/benchmarks.md).
        http_client = DefaultAioHttpClient(
            limits=httpx2.Limits(
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_SECONDS,
            ),
            timeout=timeout,
        )
        client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            http_client=http_client,
        )
        policy = RetryPolicy(max_retries=max_retries, initial_delay=retry_delay)
        return cls(client, model, timeout=timeout, retries=policy, tracer=tracer)

    async def write(self, description: str, count: int, calls: CallLog | None = None) -> Answer:
        messages = prompt_messages(description, count)
        return await self._with_retries(
            lambda deadline: self._answer(messages, count, deadline, calls),
            may_retry=lambda: True,
        )

    async def stream(
        self, description: str, count: int, deliver: Deliver, calls: CallLog | None = None
    ) -> Answer:
        """The questions handed to `deliver` one by one, each as soon as the model has
        written it; the answer once the stream is complete.

        The same deadline as `write` bounds the whole stream, `deliver` included: a
        stream that trickles is cut there (`LlmTimeout`). A failure is retried only
        while nothing was delivered; after that it is raised, and the questions
        delivered stay delivered. Cancelled (the client left), the request to the
        LLM is closed at once, so the provider stops writing too.
        """
        messages = prompt_messages(description, count)
        found = QuestionSet(count)
        return await self._with_retries(
            lambda deadline: self._stream(messages, found, deliver, deadline, calls),
            may_retry=lambda: not found.questions,
        )

    async def _with_retries(
        self, attempt: Callable[[float], Awaitable[Answer]], *, may_retry: Callable[[], bool]
    ) -> Answer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        retries_taken = 0
        while True:
            failure: LlmUnavailable
            error: BaseException
            try:
                return await attempt(deadline)
            except _Retryable as retryable:
                failure, retry_after, reason, error = (
                    retryable.failure,
                    retryable.retry_after,
                    retryable.reason,
                    retryable.cause,
                )
            except (TimeoutError, openai.APITimeoutError, httpx2.TimeoutException) as exc:
                if loop.time() >= deadline or timed_out(exc):
                    raise LlmTimeout(f"the LLM did not answer within {self._timeout:g}s") from exc
                # The transport reports a refused or dropped connection as a timeout.
                failure = LlmUnavailable("the LLM is unreachable")
                retry_after, reason, error = None, "connection", exc
            wait = self._retries.delay(retries_taken, retry_after)
            if (
                not may_retry()
                or retries_taken >= self._retries.max_retries
                or loop.time() + wait >= deadline
            ):
                failure.retry_after = max(1, math.ceil(wait))
                raise failure from error
            LLM_RETRIES.labels(self.model, reason).inc()
            retries_taken += 1
            await asyncio.sleep(wait)

    def _failure(self, exc: Exception) -> Exception:
        """What a failed request is: `_Retryable`, or the error to raise at once."""
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code in CREDENTIALS_REFUSED_STATUSES:
                return self._refused(exc.status_code)
            if not is_retryable(exc.status_code):
                return MalformedAnswer(f"the LLM rejected the request ({exc.status_code})")
            limited = exc.status_code == 429
            failure = LlmUnavailable(
                "the LLM is rate limited" if limited else f"the LLM failed ({exc.status_code})"
            )
            retry_after = server_retry_after(exc.response.headers)
            return _Retryable(failure, retry_after, str(exc.status_code), exc)
        if isinstance(exc, StreamFailed):
            return _Retryable(LlmUnavailable(f"the LLM failed: {exc}"), None, "stream", exc)
        # Unreachable, or the connection dropped mid-answer.
        return _Retryable(LlmUnavailable("the LLM is unreachable"), None, "connection", exc)

    async def _answer(
        self, messages: list[dict[str, str]], count: int, deadline: float, calls: CallLog | None
    ) -> Answer:
        """One request for the whole answer; each call that reached the provider is logged."""
        with self._spans.call() as span:
            try:
                body = await self._attempt(messages, deadline)
            except (TimeoutError, openai.APITimeoutError) as exc:
                if timed_out(exc):
                    tokens = self._tokens(None, messages, "")
                    _log_call(calls, self.model, CallEnd.TIMEOUT, tokens, span)
                raise
            except openai.APIStatusError as exc:
                _log_call(calls, self.model, CallEnd.FAILED, NO_TOKENS, span)
                raise self._failure(exc) from exc
            except openai.APIConnectionError as exc:  # never reached the provider: no call
                raise self._failure(exc) from exc
            except asyncio.CancelledError:
                tokens = self._tokens(None, messages, "")
                _log_call(calls, self.model, CallEnd.CANCELLED, tokens, span)
                raise
            try:
                answer = read_completion(
                    body, count, requested_model=self.model, prompt=messages, counter=self._counter
                )
            except MalformedAnswer as exc:
                model, tokens = exc.charged or (self.model, self._tokens(None, messages, ""))
                _log_call(calls, model, CallEnd.FAILED, tokens, span)
                raise
            _log_call(calls, answer.model, CallEnd.ANSWERED, answer.tokens, span)
            return answer

    async def _stream(
        self,
        messages: list[dict[str, str]],
        found: QuestionSet,
        deliver: Deliver,
        deadline: float,
        calls: CallLog | None,
    ) -> Answer:
        """One streamed request; each call that reached the provider is logged, however
        it ended, with the provider's usage when it came, else the tokens counted."""
        with self._spans.call() as span:
            return await self._streamed(messages, found, deliver, deadline, calls, span)

    async def _streamed(
        self,
        messages: list[dict[str, str]],
        found: QuestionSet,
        deliver: Deliver,
        deadline: float,
        calls: CallLog | None,
        span: Span,
    ) -> Answer:
        reading = StreamedCompletion()
        end: CallEnd | None = CallEnd.CANCELLED
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    # The SDK's request path (base URL, key, headers, status errors) with
                    # the body serialized once; the events are read as they arrive.
                    response = await self._client.post(
                        CHAT_COMPLETIONS_PATH,
                        cast_to=httpx2.Response,
                        content=self._stream_body.encode(messages),
                        stream=True,
                        options={"timeout": deadline - asyncio.get_running_loop().time()},
                    )
                except openai.APIStatusError as exc:
                    end = CallEnd.FAILED
                    raise self._failure(exc) from exc
                except openai.APIConnectionError as exc:
                    if not (isinstance(exc, openai.APITimeoutError) and timed_out(exc)):
                        end = None  # never reached the provider: no call
                        raise self._failure(exc) from exc
                    raise
                try:
                    async for data in response.aiter_bytes():
                        for text in reading.feed(data):
                            await _deliver_new(found, text, deliver)
                    for text in reading.finish():
                        await _deliver_new(found, text, deliver)
                finally:
                    await response.aclose()
            end = CallEnd.ANSWERED
        except (TimeoutError, openai.APITimeoutError, httpx2.TimeoutException):
            end = CallEnd.TIMEOUT if end is not None else None
            raise
        except (MalformedAnswer, _Retryable):
            end = CallEnd.FAILED if end is not None else None
            raise
        except (StreamFailed, httpx2.TransportError) as exc:
            end = CallEnd.FAILED
            raise self._failure(exc) from exc
        finally:
            if end is not None:
                tokens = self._tokens(reading.usage, messages, reading.text)
                _log_call(calls, model_name(reading.model, self.model), end, tokens, span)
        if not found.questions:
            raise MalformedAnswer("the model's answer has no questions")
        return Answer(
            questions=found.questions,
            tokens=self._tokens(reading.usage, messages, reading.text),
            model=model_name(reading.model, self.model),
        )

    def _tokens(self, usage: object, messages: list[dict[str, str]], text: str) -> Tokens:
        return call_tokens(usage, prompt=messages, text=text, counter=self._counter)

    def _refused(self, status: int) -> LlmCredentialsRefused:
        """Counted and logged once per refusal: no retry hides it."""
        LLM_CREDENTIALS_REFUSED.labels(self.model, str(status)).inc()
        log.error(
            "the LLM provider refused our credentials",
            status=status,
            model=self.model,
            base_url=str(self._client.base_url),
        )
        return LlmCredentialsRefused(status)

    async def _attempt(self, messages: list[dict[str, str]], deadline: float) -> bytes:
        """One request; the raw body, read by `read_completion` whatever the server sent."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError
        # The transport's timeouts bound each read, not the whole answer: a server
        # that trickles bytes would outlast them; the deadline does not.
        async with asyncio.timeout_at(deadline):
            # The SDK's own request path (base URL, key, headers, status errors) with
            # the body serialized here: `chat.completions.create` would walk every
            # parameter, the JSON schema included, through its type transforms on
            # every call only to produce the same bytes.
            response = await self._client.post(
                CHAT_COMPLETIONS_PATH,
                cast_to=httpx2.Response,
                content=self._body.encode(messages),
                options={"timeout": remaining},
            )
        return response.content

    async def close(self) -> None:
        if self._loading is not None:
            await self._loading  # a thread is never left running past the service
        await self._client.close()
