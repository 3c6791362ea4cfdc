"""One factory per event, for the tests and the benchmarks.

Every field has a sensible default; a test names only what it is about.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from contracts.events import (
    CreditLeft,
    CreditMode,
    CreditsChanged,
    JobCreated,
    LlmCallFinished,
    LlmCallOutcome,
    QuestionsGenerated,
)


def generated(
    company: UUID,
    *,
    job_id: UUID | None = None,
    draft: str | None = None,
    questions: int = 10,
    at: datetime | None = None,
    prompt_tokens: int = 100,
    completion_tokens: int = 200,
    model: str = "gpt-4o",
    event_id: UUID | None = None,
) -> QuestionsGenerated:
    """A `QuestionsGenerated`; held under a fresh draft id when neither job nor draft is named."""
    if job_id is None and draft is None:
        draft = f"draft-{uuid.uuid4().hex[:12]}"
    return QuestionsGenerated(
        event_id=event_id or uuid.uuid4(),
        occurred_at=at or datetime.now(UTC),
        company_id=company,
        job_id=job_id,
        draft_job_id=draft,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        question_count=questions,
        model=model,
    )


def job_created(
    company: UUID,
    *,
    job_id: UUID | None = None,
    draft: str | None = None,
    at: datetime | None = None,
    created_by: str | None = None,
    event_id: UUID | None = None,
    title: str | None = None,
) -> JobCreated:
    """A `JobCreated`, made from `draft` when one is named; untitled, as before titles."""
    return JobCreated(
        event_id=event_id or uuid.uuid4(),
        occurred_at=at or datetime.now(UTC),
        company_id=company,
        job_id=job_id or uuid.uuid4(),
        draft_job_id=draft,
        created_by=created_by,
        title=title,
    )


def llm_call(
    company: UUID,
    *,
    outcome: LlmCallOutcome = "billed",
    generation_id: UUID | None = None,
    model: str = "gpt-4o",
    at: datetime | None = None,
    prompt_tokens: int = 100,
    cached_prompt_tokens: int = 0,
    completion_tokens: int = 200,
    reasoning_tokens: int = 0,
    event_id: UUID | None = None,
) -> LlmCallFinished:
    """An `LlmCallFinished` with the provider's figures; a billed one names a fresh generation."""
    if outcome == "billed" and generation_id is None:
        generation_id = uuid.uuid4()
    return LlmCallFinished(
        event_id=event_id or uuid.uuid4(),
        occurred_at=at or datetime.now(UTC),
        company_id=company,
        model=model,
        outcome=outcome,
        generation_id=generation_id,
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=cached_prompt_tokens,
        completion_tokens=completion_tokens,
        reasoning_tokens=reasoning_tokens,
        usage_source="provider",
    )


def call_of(generation: QuestionsGenerated, **changes: object) -> LlmCallFinished:
    """The billed call behind a generation: same company, model, instant and tokens."""
    values: dict[str, object] = {
        "generation_id": generation.event_id,
        "model": generation.model,
        "at": generation.occurred_at,
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        **changes,
    }
    return llm_call(generation.company_id, **values)  # type: ignore[arg-type]


def credit_left(
    remaining: str,
    *,
    effective_at: datetime | None = None,
    expires_at: datetime | None = None,
    priority: int = 10,
) -> CreditLeft:
    """A grant with `remaining` left; in effect since a day ago, never expiring."""
    return CreditLeft(
        grant_id=uuid.uuid4(),
        remaining=Decimal(remaining),
        priority=priority,
        effective_at=effective_at or datetime.now(UTC) - timedelta(days=1),
        expires_at=expires_at,
    )


def credits_changed(
    company: UUID,
    *,
    revision: int,
    grants: Sequence[CreditLeft] = (),
    mode: CreditMode = "credit_only",
    counted: Sequence[UUID] = (),
) -> CreditsChanged:
    """A `CreditsChanged` of the whole account: its balance is what `grants` have left."""
    return CreditsChanged(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=company,
        revision=revision,
        mode=mode,
        balance=sum((g.remaining for g in grants), Decimal("0.0000")),
        low_balance_threshold=None,
        grants=list(grants),
        counted_generations=list(counted),
    )
