"""Whose token figures a call carries, and what one call is, for the events built from it."""

from __future__ import annotations

import uuid

import pytest

from contracts.events import QuestionsGenerated
from services.question_gen.generation import (
    ROUGH_COUNT,
    CallEnd,
    LlmCall,
    QuestionSet,
    Tokens,
    call_tokens,
    prompt_messages,
)
from services.question_gen.tokens import CL100K, O200K, Tokenizer, encoding_name
from tests.support.events import generated

PROMPT = prompt_messages("Python developer", 3)


def test_the_providers_usage_with_its_cached_and_reasoning_details() -> None:
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 64},
    }
    assert call_tokens(usage, prompt=PROMPT, text="x") == Tokens(
        prompt=1200, completion=300, cached_prompt=1024, reasoning=64, source="provider"
    )


@pytest.mark.parametrize(
    "usage", [None, {}, {"prompt_tokens": 10}, {"prompt_tokens": -1, "completion_tokens": 5}]
)
def test_usage_missing_or_garbled_is_counted_and_marked_estimated(
    usage: dict[str, int] | None,
) -> None:
    tokens = call_tokens(usage, prompt=PROMPT, text="Why Rust?", counter=ROUGH_COUNT)
    assert tokens.source == "estimated"
    assert tokens.completion == (5 if usage and "completion_tokens" in usage else 3)
    assert tokens.prompt == (10 if usage == {"prompt_tokens": 10} else ROUGH_COUNT.prompt(PROMPT))
    assert (tokens.cached_prompt, tokens.reasoning) == (None, None)


def test_the_tokenizer_counts_as_openai_encodes() -> None:
    tokenizer = Tokenizer("gpt-4o")
    tokenizer.load()
    assert tokenizer.text("Hello world") == 2  # o200k_base: "Hello", " world"
    assert tokenizer.text("") == 0
    # Contents, plus the chat format's framing: 3 a message, 3 to prime the answer.
    contents = sum(tokenizer.text(m["role"]) + tokenizer.text(m["content"]) for m in PROMPT)
    assert tokenizer.prompt(PROMPT) == contents + 3 * len(PROMPT) + 3


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", O200K),
        ("gpt-4o-2024-08-06", O200K),
        ("gpt-4.1-mini", O200K),
        ("o3-mini", O200K),
        ("gpt-4", CL100K),
        ("gpt-4-turbo", CL100K),
        ("gpt-3.5-turbo", CL100K),
        ("llama-3-70b", O200K),
    ],
)
def test_each_model_family_has_its_encoding(model: str, encoding: str) -> None:
    assert encoding_name(model) == encoding


@pytest.mark.parametrize(
    ("end", "billed", "outcome"),
    [
        (CallEnd.ANSWERED, True, "billed"),
        (CallEnd.CANCELLED, True, "billed"),  # a stream the client left, after k questions
        (CallEnd.ANSWERED, False, "failed"),  # answered, but nothing usable
        (CallEnd.TIMEOUT, False, "timeout"),
        (CallEnd.CANCELLED, False, "cancelled"),
        (CallEnd.FAILED, False, "failed"),
    ],
)
def test_a_calls_outcome(end: CallEnd, billed: bool, outcome: str) -> None:
    call = LlmCall(model="gpt-4o", end=end, tokens=Tokens(prompt=1, completion=1))
    assert call.outcome(billed) == outcome


def test_a_question_set_keeps_distinct_questions_up_to_the_count() -> None:
    found = QuestionSet(3)
    assert [found.add(t) for t in ("Why?", " why? ", "", 5, "How?", "What?", "Who?")] == [
        "Why?",
        None,
        None,
        None,
        "How?",
        "What?",
        None,
    ]
    assert found.full


def test_the_events_new_figures_are_optional() -> None:
    event = generated(uuid.uuid4())
    wire = event.model_dump(mode="json", by_alias=True)
    for name in ("cachedPromptTokens", "reasoningTokens", "usageSource"):
        wire.pop(name, None)
    old = QuestionsGenerated.model_validate(wire)  # an event from before they existed
    assert (old.cached_prompt_tokens, old.reasoning_tokens, old.usage_source) == (None, None, None)
    new = QuestionsGenerated.model_validate({**wire, "usageSource": "provider"})
    assert new.usage_source == "provider"
    with pytest.raises(ValueError, match="usageSource"):
        QuestionsGenerated.model_validate({**wire, "usageSource": "guessed"})
