"""The events, v1. camelCase on the wire, snake_case in Python.

Evolve additively: a new optional field stays v1 (consumers ignore fields they
do not know); a breaking change is a new class with a `.v2` routing key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

INT32_MAX = 2_147_483_647

TokenCount = Annotated[int, Field(ge=0, le=INT32_MAX)]
# PostgreSQL text cannot hold U+0000: refused up front, before any LLM is paid for.
DraftId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]
# A job's title as its recruiter wrote it: for people to read, never to match on.
JobTitle = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class Event(BaseModel):
    """What every event carries. `eventId` is also the AMQP `message_id`."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    routing_key: ClassVar[str]

    event_id: UUID
    occurred_at: AwareDatetime
    company_id: UUID

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class QuestionsGenerated(Event):
    """Questions were generated for a job or a draft, and must be billed once."""

    routing_key: ClassVar[str] = "questions.generated.v1"

    job_id: UUID | None = Field(
        default=None,
        description="The client's jobId: a saved job's id, or a draft's UUID sent as jobId.",
    )
    draft_job_id: DraftId | None = None
    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    total_tokens: TokenCount
    question_count: int = Field(ge=1, le=1_000_000)
    model: str = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _names_a_job_or_draft(self) -> QuestionsGenerated:
        if self.job_id is None and self.draft_job_id is None:
            raise ValueError("at least one of jobId and draftJobId is required")
        return self


class JobCreated(Event):
    """A job was saved, possibly from a draft whose usage should move onto it."""

    routing_key: ClassVar[str] = "jobs.created.v1"

    job_id: UUID
    draft_job_id: DraftId | None = None
    created_by: str | None = None
    title: JobTitle | None = Field(
        default=None,
        description="The job's title (optional: producers before it sent none); billing "
        "shows it wherever it lists the job.",
    )


FOUR_PLACES = Decimal("0.0001")
# Money on the wire: a decimal string with 4 places ("0.1000"), never a float.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=4),
    PlainSerializer(
        lambda amount: str(amount.quantize(FOUR_PLACES)), return_type=str, when_used="json"
    ),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]{1,14}(\.[0-9]{1,4})?$"}),
]
# A billing period: a calendar month in UTC.
Period = Annotated[str, Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", examples=["2026-11"])]
# `companyId` of the default price: the environment's price, every company's until it has its own.
DEFAULT_PRICE_COMPANY = UUID(int=0)


class PriceChanged(Event):
    """billing: a price version was added to the price book (event-carried state).

    A company's price at an instant is its version with the latest `effectiveFrom` at
    or before that instant; a company with none in force pays the default price (the
    versions whose `companyId` is the nil UUID, `isDefault` true) in force then.
    Versions are never changed or removed: a consumer keeps every one, by `priceId`.
    """

    routing_key: ClassVar[str] = "billing.price_changed.v1"

    price_id: UUID
    is_default: bool = False
    price_per_10_questions: Money
    profit_margin_percent: Money
    effective_from: AwareDatetime


class BudgetChanged(Event):
    """billing: a company's budget was set (event-carried state: the whole budget).

    `revision` grows with every change of the company's budget: a consumer keeps the
    highest it has seen, whatever order the events arrive in.
    """

    routing_key: ClassVar[str] = "billing.budget_changed.v1"

    revision: int = Field(ge=1)
    monthly_limit: Money | None = Field(description="null: no limit")
    thresholds: list[Annotated[int, Field(ge=1, le=100)]]


class SpendRecorded(Event):
    """billing: what it has billed a company in a period, after a batch of usage.

    `spent` is the period's total so far and never decreases within a period: a
    consumer keeps the highest it has seen for (companyId, period), whatever the
    order. One event per (company, period) per batch recorded, not one per usage row.
    """

    routing_key: ClassVar[str] = "billing.spend_recorded.v1"

    period: Period
    spent: Money


EVENT_TYPES: dict[str, type[Event]] = {
    QuestionsGenerated.routing_key: QuestionsGenerated,
    JobCreated.routing_key: JobCreated,
}

# Events billing publishes (for the question service's budget guard).
BILLING_EVENT_TYPES: dict[str, type[Event]] = {
    PriceChanged.routing_key: PriceChanged,
    BudgetChanged.routing_key: BudgetChanged,
    SpendRecorded.routing_key: SpendRecorded,
}
