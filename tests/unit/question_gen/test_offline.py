"""Offline answers: deterministic, distinct, drawn from the description."""

from __future__ import annotations

import json

import pytest

from services.question_gen.generation import estimate_tokens, parse_questions, prompt_messages
from services.question_gen.offline import OfflineWriter, offline_answer


def answer_json(*texts: str) -> str:
    return json.dumps({"questions": [{"text": text} for text in texts]})


def test_offline_answers_are_deterministic() -> None:
    description = "Senior Python engineer: PostgreSQL, RabbitMQ, Python, billing."
    first = offline_answer(description, 10)
    assert first == offline_answer(description, 10)
    assert first.model == "offline"
    assert len(first.questions) == 10
    assert "python" in first.questions[0]
    prompt = "".join(m["content"] for m in prompt_messages(description, 10))
    assert first.prompt_tokens == estimate_tokens(prompt)
    assert first.completion_tokens > 0


@pytest.mark.parametrize("count", [1, 10, 11, 50])
@pytest.mark.parametrize("description", ["x", "Rust", "Go and Rust", "a b c d e f g h i j k l"])
def test_offline_answers_give_as_many_distinct_questions_as_asked(
    description: str, count: int
) -> None:
    questions = offline_answer(description, count).questions
    assert len(questions) == count
    assert len(set(questions)) == count
    # What the offline writer delivers survives the same reading an LLM's answer gets.
    assert parse_questions(answer_json(*questions), count) == questions


def test_different_descriptions_give_different_offline_questions() -> None:
    assert (
        offline_answer("Kubernetes operator", 5).questions
        != offline_answer("Pastry chef", 5).questions
    )


async def test_the_offline_writer_answers_what_offline_answer_gives() -> None:
    writer = OfflineWriter()
    answer = await writer.write("Pastry chef", 3)
    assert answer == offline_answer("Pastry chef", 3)
    assert writer.model == "offline"
    await writer.close()
