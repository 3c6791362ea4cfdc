"""HTTP response bodies of the billing read API. Money is a 4-place decimal string."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

from services.billing.ledger.rules import format_money

UsageStatus = Literal["draft", "job"]

# Decimal inside, a 4-place string on the wire: never a float.
Money = Annotated[
    Decimal,
    PlainSerializer(format_money, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^-?\d+\.\d{4}$", "examples": ["0.1000"]},
        mode="serialization",
    ),
]


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Usage(CamelModel):
    """One generation, billed once: on its job, or held under its draft until the job exists."""

    id: UUID
    company_id: UUID
    job_id: UUID | None = Field(description="Set once the usage belongs to a saved job.")
    draft_job_id: str | None = Field(description="Set while the usage waits for its job.")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    question_count: int
    cost: Money
    model_used: str | None
    created_at: datetime = Field(description="When the questions were generated.")


class UsagePage(CamelModel):
    items: list[Usage]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class Totals(CamelModel):
    generations: int = Field(description="Usage rows (one per generation).")
    cost: Money
    question_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class JobLine(Totals):
    job_id: UUID
    first_used_at: datetime
    last_used_at: datetime


class DraftTotals(Totals):
    count: int = Field(description="Drafts with usage still waiting for their job.")
    abandoned: int = Field(description="How many of them are listed in `abandonedDrafts`.")


class AbandonedDraft(Totals):
    """A draft first used longer ago than the configured age that never became a job.

    Its usage is still billed: the questions were generated.
    """

    draft_job_id: str
    first_used_at: datetime
    last_used_at: datetime


class Summary(CamelModel):
    from_: datetime | None = Field(
        alias="from", description="Inclusive start of the period, as asked."
    )
    to: datetime | None = Field(description="Exclusive end of the period, as asked.")
    abandoned_draft_after_hours: float = Field(
        description="Age (since its first use) after which a waiting draft counts as abandoned."
    )
    totals: Totals = Field(description="Everything billed in the period: jobs and drafts.")
    jobs: list[JobLine] = Field(description="One line per job, most recently used first.")
    drafts: DraftTotals = Field(description="Usage still held under drafts.")
    abandoned_drafts: list[AbandonedDraft] = Field(description="Oldest first.")
