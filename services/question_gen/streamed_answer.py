"""Pure reading of a streamed Chat Completions answer, question by question.

OpenAI streams `chat.completion.chunk` objects as server-sent events: each
carries a piece of the answer's text (`choices[0].delta.content`); with
`stream_options.include_usage` a last chunk with no choices carries `usage`;
`data: [DONE]` ends it. The text is the Structured Outputs JSON
`{"questions": [{"text": "..."}]}`, read as it grows: a question is complete
when its string closes, long before the whole answer is in. The partial text
is parsed with jiter's partial mode (the parser the OpenAI SDK uses for its own
partial JSON), which keeps every string that has closed and drops the one still
being written; it is parsed again only when a piece holds a quote, the one
character that can close a string.

Whatever the server sends is read defensively, as `generation.read_completion`
does: what cannot be used is a `MalformedAnswer`, and an error the server
reports inside the stream is a `StreamFailed`; neither is ever a crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jiter

from services.question_gen.generation import (
    MAX_ANSWER_BYTES,
    MalformedAnswer,
    question_items,
)

DONE = b"[DONE]"


class StreamFailed(Exception):
    """The server reported an error inside the stream (OpenAI sends `{"error": ...}`)."""


def _partial(text: str) -> Any:
    try:
        return jiter.from_json(text.encode(), partial_mode="on")
    except ValueError as exc:
        raise MalformedAnswer("the model's answer is not JSON") from exc


class QuestionsSoFar:
    """The answer's text as it grows; `add` returns the question texts that just closed."""

    def __init__(self) -> None:
        self.text = ""
        self._seen = 0  # items of the questions list already settled (given or skipped)

    def add(self, piece: str) -> list[str]:
        self.text += piece
        if len(self.text) > MAX_ANSWER_BYTES:
            raise MalformedAnswer("the model's answer is too large")
        if '"' not in piece or not self.text.lstrip().startswith("{"):
            # No string can have closed. Text that does not open an object is read
            # whole at the end (`finish`), where it is refused.
            return []
        data = _partial(self.text)
        items = data.get("questions") if isinstance(data, dict) else None
        return self._closed(items) if isinstance(items, list) else []

    def _closed(self, items: list[Any]) -> list[str]:
        closed: list[str] = []
        while self._seen < len(items):
            item = items[self._seen]
            text = item.get("text") if isinstance(item, dict) else None
            last = self._seen == len(items) - 1
            if isinstance(text, str):
                closed.append(text)
            elif last:
                break  # still being written
            # else: an item that ended with no text: nothing to give
            self._seen += 1
        return closed

    def finish(self) -> list[str]:
        """The answer is complete: the questions not given yet; `MalformedAnswer` if it is
        not the JSON asked for."""
        if not self.text.strip():
            raise MalformedAnswer("the model returned no content")
        try:
            data = json.loads(self.text)
        except (ValueError, RecursionError) as exc:
            raise MalformedAnswer("the model's answer is not JSON") from exc
        return self._closed(question_items(data))


def _chunk(data: bytes) -> Mapping[str, Any]:
    try:
        # jiter, not json: a stream is hundreds of small chunks, and jiter reads one
        # in a tenth of the time (docs/benchmarks.md, generation_streamed).
        chunk = jiter.from_json(data)
    except ValueError as exc:
        raise MalformedAnswer("the LLM's stream holds an event that is not JSON") from exc
    if not isinstance(chunk, Mapping):
        raise MalformedAnswer("the LLM's stream holds an event that is not an object")
    return chunk


def _data(event: bytes) -> tuple[bytes | None, bytes]:
    """An event's data (None for a comment or a keep-alive) and its name."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:], b""  # OpenAI's every event: one data line
    data: list[bytes] = []
    name = b""
    for line in event.split(b"\n"):
        field, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    return (b"\n".join(data) if data else None), name


class StreamedCompletion:
    """Reads the bytes of the stream as they arrive (`feed`), one event at a time."""

    def __init__(self) -> None:
        self.answer = QuestionsSoFar()
        self.model: object = None
        self.usage: object = None
        self.done = False
        self._buffer = b""
        self._failure: Exception | None = None  # raised once what closed before it is given

    @property
    def text(self) -> str:
        return self.answer.text

    def feed(self, data: bytes) -> list[str]:
        """The question texts that closed in these bytes, in order.

        An event that fails the stream is raised after the questions that closed before
        it in the same bytes were given (on the next `feed` or `finish`).
        """
        self._raise_failure()
        self._buffer += data
        if b"\r" in self._buffer:  # the event-stream format allows CRLF line ends
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
        closed: list[str] = []
        while not self.done:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                if len(self._buffer) > MAX_ANSWER_BYTES:
                    raise MalformedAnswer("the LLM's stream holds an event that is too large")
                break
            event, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            try:
                closed.extend(self._event(event))
            except (MalformedAnswer, StreamFailed) as exc:
                if not closed:
                    raise
                self._failure = exc
                break
        return closed

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def _event(self, event: bytes) -> list[str]:
        payload, name = _data(event)
        if payload is None:
            return []
        if payload.strip() == DONE:
            self.done = True
            return []
        chunk = _chunk(payload)
        error = chunk.get("error")
        if error is not None or name == b"error":
            message = error.get("message") if isinstance(error, Mapping) else None
            raise StreamFailed(message if isinstance(message, str) else "the LLM's stream failed")
        if self.model is None:
            self.model = chunk.get("model")
        usage = chunk.get("usage")
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            return []
        delta = choices[0].get("delta")
        if not isinstance(delta, Mapping):
            return []
        if delta.get("refusal"):
            raise MalformedAnswer("the LLM refused to answer")
        content = delta.get("content")
        return self.answer.add(content) if isinstance(content, str) and content else []

    def finish(self) -> list[str]:
        """The stream ended: the questions not given yet, once the whole answer is read."""
        self._raise_failure()
        return self.answer.finish()
