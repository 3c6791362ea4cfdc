"""Each request to the LLM as a client span, named and described by OpenTelemetry's GenAI
conventions (`gen_ai.*`): what was asked of which model, which model answered, and the
tokens it counted. One span per request: a retry is another span, as it is another call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

from services.question_gen.generation import Tokens

OPERATION = "chat"
PROVIDER = "openai"


def request_attributes(model: str, host: str, port: int | None) -> dict[str, AttributeValue]:
    """What a span knows before the call: the operation, the provider, the model asked."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": OPERATION,
        "gen_ai.provider.name": PROVIDER,
        # The name before `gen_ai.provider.name`, which backends still read.
        "gen_ai.system": PROVIDER,
        "gen_ai.request.model": model,
        "gen_ai.output.type": "json",
        "server.address": host,
    }
    if port is not None:
        attributes["server.port"] = port
    return attributes


def response_attributes(model: str, tokens: Tokens) -> dict[str, AttributeValue]:
    """What the call cost: the model that answered and the tokens in and out."""
    return {
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": tokens.prompt,
        "gen_ai.usage.output_tokens": tokens.completion,
    }


class LlmSpans:
    """Spans of one writer's calls, on its service's tracer; none at all without one."""

    def __init__(
        self, tracer: trace.Tracer | None, model: str, host: str, port: int | None
    ) -> None:
        self._tracer = tracer
        self._name = f"{OPERATION} {model}"
        self._attributes = request_attributes(model, host, port)

    @contextmanager
    def call(self) -> Iterator[Span]:
        """The span of one request, current while it runs; its error's type when it fails."""
        if self._tracer is None:
            yield trace.INVALID_SPAN
            return
        with self._tracer.start_as_current_span(
            self._name, kind=SpanKind.CLIENT, attributes=self._attributes
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_attribute("error.type", error_type(exc))
                raise


def error_type(exc: BaseException) -> str:
    """What went wrong, in few words: a retryable failure's reason (the HTTP status, or
    `connection`, `stream`), else the error's class."""
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and reason else type(exc).__qualname__


def record_response(span: Span, model: str, tokens: Tokens) -> None:
    if span.is_recording():
        span.set_attributes(response_attributes(model, tokens))
