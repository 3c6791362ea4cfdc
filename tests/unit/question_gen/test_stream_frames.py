"""The stream's frames, and what a stream bills: the questions delivered, their call's tokens."""

from __future__ import annotations

import json
import uuid

import pytest

from services.question_gen.generation import CallEnd, LlmCall, Tokens
from services.question_gen.schemas import GenerateQuestionsRequest
from services.question_gen.streaming import (
    Generation,
    delivered_answer,
    event_frame,
    question_frame,
    wants_stream,
)


@pytest.mark.parametrize(
    ("accept", "streams"),
    [
        ("text/event-stream", True),
        ("application/json, Text/Event-Stream;q=0.9", True),
        ("application/json", False),
        ("*/*", False),
        (None, False),
    ],
)
def test_a_stream_is_what_the_client_accepts(accept: str | None, streams: bool) -> None:
    assert wants_stream(accept) is streams


def test_a_question_frame_is_one_event_of_one_json_line() -> None:
    frame = question_frame(2, 'Why "this"?\nAnd that?')
    name, data, end = frame.decode().split("\n", 2)
    assert name == "event: question"
    assert json.loads(data.removeprefix("data: ")) == {"index": 2, "text": 'Why "this"?\nAnd that?'}
    assert end == "\n"
    assert event_frame("done", b"{}") == b"event: done\ndata: {}\n\n"


def test_what_a_stream_bills_is_what_it_delivered_with_its_calls_tokens() -> None:
    request = GenerateQuestionsRequest(draft_job_id="d", job_description="Go")
    generation = Generation(uuid.uuid4(), request, None, None, None)
    tokens = Tokens(prompt=100, completion=40, source="estimated")
    generation.calls.extend(
        [
            LlmCall("gpt-4o", CallEnd.FAILED, Tokens(prompt=0, completion=0)),  # a retry
            LlmCall("gpt-4o-2024-08-06", CallEnd.CANCELLED, tokens),
        ]
    )
    answer = delivered_answer(generation, ["A?", "B?"], "gpt-4o")
    assert answer.questions == ["A?", "B?"]
    assert answer.tokens == tokens
    assert answer.model == "gpt-4o-2024-08-06"
