"""Question writers: the OpenAI SDK, or an offline one when no API key is set.

Failures are told apart here and nowhere else: `LlmUnavailable` (rate limited,
unreachable, 5xx after the SDK's own retries) answers 503 with `Retry-After`,
`LlmTimeout` 504, `MalformedAnswer` 502. None of them is billed.
"""

from __future__ import annotations

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
    parse_questions,
    prompt_messages,
)

DEFAULT_RETRY_AFTER_SECONDS = 5


class LlmUnavailable(Exception):
    def __init__(self, detail: str, retry_after: int = DEFAULT_RETRY_AFTER_SECONDS) -> None:
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


def _retry_after(error: openai.APIStatusError) -> int:
    value = error.response.headers.get("retry-after")
    try:
        return max(1, int(float(value))) if value else DEFAULT_RETRY_AFTER_SECONDS
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS


class OpenAIWriter:
    """Chat Completions with Structured Outputs, through the official SDK.

    The SDK retries 429, 5xx and connection errors itself, with exponential
    backoff that honours `Retry-After`; we only translate what is left.
    """

    def __init__(self, client: AsyncOpenAI, model: str) -> None:
        self._client = client
        self.model = model

    @classmethod
    def from_settings(
        cls, *, api_key: str, base_url: str | None, model: str, timeout: float, max_retries: int
    ) -> OpenAIWriter:
        client = AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        return cls(client, model)

    async def write(self, description: str, count: int) -> Answer:
        try:
            completion = await self._client.chat.completions.create(
                model=self.model,
                messages=cast(
                    "list[ChatCompletionMessageParam]", prompt_messages(description, count)
                ),
                response_format=cast("ResponseFormatJSONSchema", RESPONSE_FORMAT),
            )
        except openai.APITimeoutError as exc:
            raise LlmTimeout("the LLM did not answer in time") from exc
        except openai.APIConnectionError as exc:
            raise LlmUnavailable("the LLM is unreachable") from exc
        except openai.RateLimitError as exc:
            raise LlmUnavailable("the LLM is rate limited", _retry_after(exc)) from exc
        except openai.InternalServerError as exc:
            raise LlmUnavailable(f"the LLM failed ({exc.status_code})", _retry_after(exc)) from exc
        except openai.APIStatusError as exc:
            raise MalformedAnswer(f"the LLM refused the request ({exc.status_code})") from exc
        except openai.APIResponseValidationError as exc:
            raise MalformedAnswer("the LLM's response could not be read") from exc
        if not completion.choices:
            raise MalformedAnswer("the LLM returned no choices")
        message = completion.choices[0].message
        if getattr(message, "refusal", None):
            raise MalformedAnswer("the LLM refused to answer")
        questions = parse_questions(message.content, count)
        usage = completion.usage
        return Answer(
            questions=questions,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            model=(completion.model or self.model)[:50],
        )

    async def close(self) -> None:
        await self._client.close()
