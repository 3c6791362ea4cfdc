"""LLM metrics: calls, latency, tokens and errors by model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

from services.question_gen.generation import Answer

LLM_CALLS = Counter("llm_calls_total", "LLM calls, by model and outcome.", ["model", "outcome"])
LLM_LATENCY = Histogram(
    "llm_call_duration_seconds",
    "LLM call latency, retries included.",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
)
LLM_RETRIES = Counter(
    "llm_retries_total", "LLM requests retried, by model and reason.", ["model", "reason"]
)
LLM_CREDENTIALS_REFUSED = Counter(
    "llm_credentials_refused_total",
    "LLM calls the provider refused our credentials for (401, 403), by model and status.",
    ["model", "status"],
)
LLM_TOKENS = Counter("llm_tokens_total", "Tokens used, by model and kind.", ["model", "kind"])
QUESTIONS_GENERATED = Counter(
    "questions_generated_total", "Questions delivered (and billed).", ["model"]
)


class LlmCall:
    def __init__(self, model: str) -> None:
        self.model = model
        self.answer: Answer | None = None

    def record(self, answer: Answer) -> None:
        self.answer = answer


@contextmanager
def observe_llm_call(model: str) -> Iterator[LlmCall]:
    call = LlmCall(model)
    started = time.perf_counter()
    try:
        yield call
    except Exception as exc:
        LLM_CALLS.labels(model, type(exc).__name__).inc()
        raise
    finally:
        LLM_LATENCY.labels(model).observe(time.perf_counter() - started)
    answer = call.answer
    if answer is not None:
        # Labelled by the configured model, not the name the server answers with:
        # label values must not be chosen by the other side.
        LLM_CALLS.labels(model, "ok").inc()
        LLM_TOKENS.labels(model, "prompt").inc(answer.prompt_tokens)
        LLM_TOKENS.labels(model, "completion").inc(answer.completion_tokens)
        QUESTIONS_GENERATED.labels(model).inc(len(answer.questions))


QUESTION_STREAMS = Counter(
    "question_streams_total",
    "Streamed generations, by what ended them (completed, disconnected, failed, timeout, "
    "stopped) and whether any question was delivered (and so billed).",
    ["ending", "billed"],
)
FIRST_QUESTION = Histogram(
    "question_stream_first_question_seconds",
    "From a stream's request to its first question written to the client.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30),
)
