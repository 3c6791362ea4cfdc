"""HTTP response bodies of the billing read API. Money is a 4-place decimal string."""

from __future__ import annotations

import datetime as dt
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


# The currency of every amount in the answer that carries it (`BILLING_CURRENCY`).
CurrencyCode = Annotated[
    str,
    Field(
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of every amount in this answer.",
        examples=["USD"],
    ),
]
# A job's title as its JobCreated named it; null while billing knows none.
JobTitle = Annotated[
    str | None,
    Field(description="The job's title; null when billing knows none (a draft, an older job)."),
]


class Priced(CamelModel):
    """An answer with money in it: it says which currency."""

    currency: CurrencyCode


class Usage(Priced):
    """One generation, billed once: on its job, or held under its draft until the job exists."""

    id: UUID
    company_id: UUID
    job_id: UUID | None = Field(description="Set once the usage belongs to a saved job.")
    job_title: JobTitle
    draft_job_id: str | None = Field(description="Set while the usage waits for its job.")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    question_count: int
    cost: Money
    model_used: str | None
    created_at: datetime = Field(description="When the questions were generated.")
    period: str = Field(description="The billing period (YYYY-MM, UTC) it is billed in.")
    price_id: UUID | None = Field(
        description="The price version it was priced with; null for rows priced before versions."
    )


class UsagePage(Priced):
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
    job_title: JobTitle
    first_used_at: datetime = Field(description="Its first use inside the range.")
    last_used_at: datetime = Field(description="Its last use inside the range.")


class DraftTotals(Totals):
    count: int = Field(description="Drafts with usage in the range still waiting for their job.")
    abandoned: int = Field(
        description="How many of them were first used longer ago than the abandoned age."
    )


class Summary(Priced):
    from_: datetime | None = Field(
        alias="from", description="Inclusive start of the range, as asked."
    )
    to: datetime | None = Field(description="Exclusive end of the range, as asked.")
    abandoned_draft_after_hours: float = Field(
        description="Age (since its first use) after which a waiting draft counts as abandoned."
    )
    totals: Totals = Field(description="Everything billed in the range: jobs and drafts.")
    jobs: list[JobLine] = Field(
        description="One page of lines, one per job: by cost descending, then jobId."
    )
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same from and to) for the next page of jobs; "
        "null on the last page."
    )
    drafts: DraftTotals = Field(
        description="Usage still held under drafts; the drafts themselves: /api/billing/drafts."
    )


class Draft(Totals):
    """An open draft: usage generated before its job was saved, still waiting for it.

    An abandoned one was first used longer ago than the configured age; its usage is
    still billed: the questions were generated.
    """

    draft_job_id: str
    first_used_at: datetime
    last_used_at: datetime
    abandoned: bool


class DraftPage(Priced):
    drafts: list[Draft] = Field(description="Oldest first use first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same abandoned) for the next page; null at the end."
    )


class Day(CamelModel):
    date: dt.date = Field(description="A UTC day of the usage rows' createdAt.")
    generations: int
    question_count: int
    cost: Money


class DailySeries(Priced):
    from_: dt.date = Field(alias="from")
    to: dt.date
    days: list[Day] = Field(description="One per day with usage, oldest first.")
