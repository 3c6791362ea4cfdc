"""The `LlmCallFinished` events built from a generation's call log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts.events import LlmCallFinished
from services.question_gen.call_events import call_events
from services.question_gen.generation import CallEnd, LlmCall, Tokens

COMPANY = uuid.uuid4()
AT = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
PROVIDER = Tokens(prompt=1200, completion=300, cached_prompt=1024, reasoning=64, source="provider")
ESTIMATED = Tokens(prompt=90, completion=0)
REFUSED = Tokens(prompt=0, completion=0)


def call(end: CallEnd, tokens: Tokens = ESTIMATED, model: str = "gpt-4o-2024-08-06") -> LlmCall:
    return LlmCall(model=model, end=end, tokens=tokens)


def test_a_billed_call_names_its_generation_with_the_providers_figures() -> None:
    generation = uuid.uuid4()
    [event] = call_events(
        COMPANY, [call(CallEnd.ANSWERED, PROVIDER)], generation_id=generation, occurred_at=AT
    )
    assert isinstance(event, LlmCallFinished)
    assert (event.outcome, event.generation_id, event.company_id) == ("billed", generation, COMPANY)
    assert (event.prompt_tokens, event.cached_prompt_tokens) == (1200, 1024)
    assert (event.completion_tokens, event.reasoning_tokens) == (300, 64)
    assert (event.usage_source, event.occurred_at) == ("provider", AT)
    assert event.model == "gpt-4o-2024-08-06"


def test_retries_before_the_answer_are_unbilled_and_only_the_last_call_is_billed() -> None:
    generation = uuid.uuid4()
    events = call_events(
        COMPANY,
        [call(CallEnd.FAILED, REFUSED), call(CallEnd.FAILED, REFUSED), call(CallEnd.ANSWERED)],
        generation_id=generation,
    )
    assert [(e.outcome, e.generation_id) for e in events] == [
        ("failed", None),
        ("failed", None),
        ("billed", generation),
    ]
    assert len({event.event_id for event in events}) == 3


def test_without_a_generation_every_call_says_how_it_ended() -> None:
    calls = [
        call(CallEnd.ANSWERED),  # answered, but malformed: nothing billed
        call(CallEnd.TIMEOUT),
        call(CallEnd.CANCELLED),
        call(CallEnd.FAILED, REFUSED),
    ]
    events = call_events(COMPANY, calls)
    assert [event.outcome for event in events] == ["failed", "timeout", "cancelled", "failed"]
    assert {event.generation_id for event in events} == {None}
    assert {event.usage_source for event in events} == {"estimated"}


def test_a_stream_cut_after_its_questions_were_delivered_is_billed() -> None:
    generation = uuid.uuid4()
    [event] = call_events(COMPANY, [call(CallEnd.CANCELLED)], generation_id=generation)
    assert event.outcome == "billed"


def test_figures_that_do_not_add_up_are_bounded_by_their_totals() -> None:
    odd = Tokens(prompt=10, completion=5, cached_prompt=50, reasoning=9, source="provider")
    [event] = call_events(COMPANY, [call(CallEnd.FAILED, odd)])
    assert (event.cached_prompt_tokens, event.reasoning_tokens) == (10, 5)


def test_no_calls_no_events() -> None:
    assert call_events(COMPANY, [], generation_id=uuid.uuid4()) == []
