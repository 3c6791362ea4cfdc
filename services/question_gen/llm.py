"""Question writers: the OpenAI SDK, or an offline one when no API key is set.

Failures are told apart here and nowhere else: `LlmUnavailable` (rate limited,
unreachable, 5xx, after bounded retries) answers 503 with `Retry-After`,
`LlmTimeout` 504, `MalformedAnswer` 502. None of them is billed.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, cast

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from services.question_gen.generation import (
    RESPONSE_FORMAT,
    Answer,
    MalformedAnswer,
    offline_answer,
    prompt_messages,
    read_completion,
)
from services.question_gen.metrics import LLM_RETRIES

# What the LLM's server may answer and still answer well a moment later.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


class LlmUnavailable(Exception):
    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class LlmTimeout(Exception):
    pass


class QuestionWriter(Protocol):
    model: str

    async def write(self, description: str, count: int) -> Answer: ...

    async def close(self) -> None: ...


class OfflineWriter:
    """Deterministic questions from the description, for laptops with no account."""

    model = "offline"

    async def write(self, description: str, count: int) -> Answer:
        return offline_answer(description, count)

    async def close(self) -> None:
        return None


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def server_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait (`retry-after-ms`, then `retry-after`), if any.

    An HTTP date in `retry-after` is not read: the backoff applies instead.
    """
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(name)
        try:
            seconds = float(value) / divisor if value is not None else math.nan
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


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
        self, client: AsyncOpenAI, model: str, *, timeout: float, retries: RetryPolicy
    ) -> None:
        self._client = client
        self.model = model
        self._timeout = timeout
        self._retries = retries

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
    ) -> OpenAIWriter:
        client = AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        policy = RetryPolicy(max_retries=max_retries, initial_delay=retry_delay)
        return cls(client, model, timeout=timeout, retries=policy)

    async def write(self, description: str, count: int) -> Answer:
        messages = prompt_messages(description, count)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        retries_taken = 0
        while True:
            try:
                body = await self._attempt(messages, deadline)
                return read_completion(body, count, requested_model=self.model, prompt=messages)
            except (TimeoutError, openai.APITimeoutError) as exc:
                raise LlmTimeout(f"the LLM did not answer within {self._timeout:g}s") from exc
            except openai.APIConnectionError as exc:
                failure = LlmUnavailable("the LLM is unreachable")
                retry_after, reason = None, "connection"
                error: Exception = exc
            except openai.APIStatusError as exc:
                if not is_retryable(exc.status_code):
                    raise MalformedAnswer(
                        f"the LLM rejected the request ({exc.status_code})"
                    ) from exc
                limited = exc.status_code == 429
                failure = LlmUnavailable(
                    "the LLM is rate limited" if limited else f"the LLM failed ({exc.status_code})"
                )
                retry_after, reason = server_retry_after(exc.response.headers), str(exc.status_code)
                error = exc
            wait = self._retries.delay(retries_taken, retry_after)
            if retries_taken >= self._retries.max_retries or loop.time() + wait >= deadline:
                failure.retry_after = max(1, math.ceil(wait))
                raise failure from error
            LLM_RETRIES.labels(self.model, reason).inc()
            retries_taken += 1
            await asyncio.sleep(wait)

    async def _attempt(self, messages: list[dict[str, str]], deadline: float) -> bytes:
        """One request; the raw body, read by `read_completion` whatever the server sent."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError
        # httpx's timeouts bound each read, not the whole answer: a server that
        # trickles bytes would outlast them; the deadline does not.
        async with asyncio.timeout_at(deadline):
            response = await self._client.chat.completions.with_raw_response.create(
                model=self.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                response_format=cast("ResponseFormatJSONSchema", RESPONSE_FORMAT),
                timeout=remaining,
            )
        return response.content

    async def close(self) -> None:
        await self._client.close()
