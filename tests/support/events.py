"""One factory per event, for the tests and the benchmarks.

Every field has a sensible default; a test names only what it is about.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from uuid import UUID

from contracts.events import JobCreated, QuestionsGenerated


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
