"""The `LlmCallFinished` events of a generation's calls: what the provider will charge us.

Every call that reached the provider is one event, billed or not. When a generation
was recorded, the last call of its log is the one whose questions were billed (a
writer retries only before anything was delivered, so the answer is always the last
call); every other call ended without a bill, as `failed`, `timeout` or `cancelled`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from contracts.events import INT32_MAX, LlmCallFinished
from services.question_gen.generation import LlmCall


def call_events(
    company_id: UUID,
    calls: Sequence[LlmCall],
    *,
    generation_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> list[LlmCallFinished]:
    """One event per call, in order; with `generation_id`, the last call is billed by it."""
    when = occurred_at or datetime.now(UTC)
    events = []
    for index, call in enumerate(calls):
        billed = generation_id is not None and index == len(calls) - 1
        events.append(_event(company_id, call, billed, generation_id if billed else None, when))
    return events


def _event(
    company_id: UUID, call: LlmCall, billed: bool, generation_id: UUID | None, when: datetime
) -> LlmCallFinished:
    tokens = call.tokens
    prompt = _count(tokens.prompt)
    completion = _count(tokens.completion)
    return LlmCallFinished(
        event_id=uuid.uuid4(),
        occurred_at=when,
        company_id=company_id,
        model=call.model,
        outcome=call.outcome(billed),
        generation_id=generation_id,
        prompt_tokens=prompt,
        # The contract's figures include their parts; a provider's odd report never
        # makes the event unpublishable.
        cached_prompt_tokens=min(_count(tokens.cached_prompt), prompt),
        completion_tokens=completion,
        reasoning_tokens=min(_count(tokens.reasoning), completion),
        usage_source=tokens.source,
    )


def _count(tokens: int | None) -> int:
    return min(max(tokens or 0, 0), INT32_MAX)
