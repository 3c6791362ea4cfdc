"""Reading a streamed answer: each question as its string closes, whatever the chunking."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.question_gen.generation import MalformedAnswer
from services.question_gen.streamed_answer import QuestionsSoFar, StreamedCompletion, StreamFailed

TEXTS = ['Why "Rust"?', "What is\nyour \\ stack?", "Émigré 中文 ✓?", "Last?"]
CONTENT = json.dumps({"questions": [{"text": text} for text in TEXTS]})


def chunk(delta: dict[str, Any] | None = None, **fields: Any) -> bytes:
    body: dict[str, Any] = {"model": "gpt-4o-2024-08-06", "choices": [], **fields}
    if delta is not None:
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def stream_of(content: str, size: int, usage: dict[str, Any] | None = None) -> bytes:
    pieces = [content[start : start + size] for start in range(0, len(content), size)]
    body = b"".join(chunk({"content": piece}) for piece in pieces)
    if usage is not None:
        body += chunk(usage=usage)
    return body + b"data: [DONE]\n\n"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50, len(CONTENT)])
def test_each_question_closes_once_in_order_whatever_the_pieces(size: int) -> None:
    found = QuestionsSoFar()
    closed = []
    for start in range(0, len(CONTENT), size):
        closed.extend(found.add(CONTENT[start : start + size]))
    closed.extend(found.finish())
    assert closed == TEXTS


def test_a_question_is_given_when_its_string_closes_not_when_the_answer_ends() -> None:
    found = QuestionsSoFar()
    assert found.add('{"questions": [{"text": "Why') == []
    assert found.add(" Rust?") == []
    assert found.add('"') == ["Why Rust?"]
    assert found.add('}, {"text": "Next') == []
    assert found.add('?"}') == ["Next?"]
    assert found.add("]}") == []
    assert found.finish() == []


@pytest.mark.parametrize(
    "content",
    ["", "Sure! Here are your questions", '{"questions": [{"text": "a"}', '{"questions": 5}'],
)
def test_an_answer_that_is_not_the_json_asked_for_is_malformed(content: str) -> None:
    def read() -> None:
        found = QuestionsSoFar()
        found.add(content)
        found.finish()

    with pytest.raises(MalformedAnswer):
        read()


@pytest.mark.parametrize("size", [1, 5, 64, 10_000])
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_the_event_stream_gives_questions_model_and_usage(size: int, line_end: bytes) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}
    raw = stream_of(CONTENT, 9, usage).replace(b"\n", line_end)
    reading = StreamedCompletion()
    closed = []
    for start in range(0, len(raw), size):
        closed.extend(reading.feed(raw[start : start + size]))
    closed.extend(reading.finish())
    assert closed == TEXTS
    assert reading.model == "gpt-4o-2024-08-06"
    assert reading.usage == usage
    assert reading.done
    assert reading.text == CONTENT


def test_comments_and_empty_deltas_are_ignored() -> None:
    reading = StreamedCompletion()
    raw = b": keep-alive\n\n" + chunk({"role": "assistant", "content": ""}) + chunk({})
    assert reading.feed(raw + stream_of(CONTENT, 1000)) == TEXTS


def test_an_error_inside_the_stream_fails_it_after_what_closed_before() -> None:
    reading = StreamedCompletion()
    raw = chunk({"content": '{"questions": [{"text": "a"}'})
    # In the same bytes: the question is given first, then the error raised.
    assert reading.feed(raw + b'data: {"error": {"message": "overloaded"}}\n\n') == ["a"]
    with pytest.raises(StreamFailed, match="overloaded"):
        reading.finish()


@pytest.mark.parametrize(
    "event",
    [b"data: {not json\n\n", b"data: [1, 2]\n\n", chunk({"refusal": "I can't help with that."})],
)
def test_an_unusable_event_is_malformed(event: bytes) -> None:
    with pytest.raises(MalformedAnswer):
        StreamedCompletion().feed(event)
