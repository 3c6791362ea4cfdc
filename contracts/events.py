"""The events, v1. camelCase on the wire, snake_case in Python.

Evolve additively: a new optional field stays v1 (consumers ignore fields they
do not know); a breaking change is a new class with a `.v2` routing key.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
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

# Where a generation's token figures come from.
UsageSource = Literal["provider", "estimated"]

# A UUID as browsers and libraries spell it: any case, in braces or not, `urn:uuid:` or not,
# hyphenated as 8-4-4-4-12 or not at all.
_UUID_HEX = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}"
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
URN_PREFIX = "urn:uuid:"
UUID_SPELLING = re.compile(rf"(?:urn:uuid:)?(?:\{{(?:{_UUID_HEX})\}}|(?:{_UUID_HEX}))", re.I)


def canonical_draft_id(draft: str) -> str:
    """One spelling per draft: a UUID in lower case, hyphenated; anything else as sent.

    A draft id is compared as text everywhere (the jobs service's one job per draft,
    billing's drafts, its locks), and a browser may send `C263101C-...` to one service
    and `c263101c-...` to another. Applied where a draft id enters (`DraftId`), so every
    layer after it sees one spelling. Billing's migration 0005 applies the same rule in SQL.
    """
    if CANONICAL_UUID.fullmatch(draft) is not None:
        return draft  # what nearly every client sends: checked first, cheaply
    if UUID_SPELLING.fullmatch(draft) is None:
        return draft
    digits = draft[len(URN_PREFIX) :] if draft[: len(URN_PREFIX)].lower() == URN_PREFIX else draft
    return str(UUID(hex=digits.strip("{}").replace("-", "")))


# PostgreSQL text cannot hold U+0000: refused up front, before any LLM is paid for.
DraftId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00]+$",
        description="A draft's id: a UUID (in any spelling, kept lower-case and hyphenated) "
        "or any other text, kept as sent.",
    ),
    AfterValidator(canonical_draft_id),
]
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
    cached_prompt_tokens: TokenCount | None = Field(
        default=None, description="Of promptTokens, those the provider served from its cache."
    )
    reasoning_tokens: TokenCount | None = Field(
        default=None, description="Of completionTokens, those the model spent reasoning."
    )
    usage_source: UsageSource | None = Field(
        default=None,
        description='"provider": the token figures are the LLM provider\'s own; "estimated": '
        "counted from the prompt and the text received (the provider sent none).",
    )

    @model_validator(mode="after")
    def _names_a_job_or_draft(self) -> QuestionsGenerated:
        if self.job_id is None and self.draft_job_id is None:
            raise ValueError("at least one of jobId and draftJobId is required")
        return self


# What ended one call to the LLM: "billed" when its generation was billed (a
# QuestionsGenerated names it), otherwise why nothing was billed for it.
LlmCallOutcome = Literal["billed", "failed", "timeout", "cancelled"]


class LlmCallFinished(Event):
    """A call to the LLM ended, billed or not: what the provider will charge for it.

    Token figures are the provider's, as OpenAI reports them: `promptTokens`
    includes `cachedPromptTokens`, and `completionTokens` includes `reasoningTokens`.
    Every call the question service makes (each retry that reached the provider
    is a call of its own) is published once.
    """

    routing_key: ClassVar[str] = "questions.llm_call.v1"

    model: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00]+$",
        description="The model the provider answered with (it may carry a dated suffix).",
    )
    outcome: LlmCallOutcome
    generation_id: UUID | None = Field(
        default=None, description="The billed generation's id (its QuestionsGenerated eventId)."
    )
    prompt_tokens: TokenCount
    cached_prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount
    reasoning_tokens: TokenCount = 0
    usage_source: UsageSource

    @model_validator(mode="after")
    def _figures_add_up(self) -> LlmCallFinished:
        if self.cached_prompt_tokens > self.prompt_tokens:
            raise ValueError("cachedPromptTokens cannot exceed promptTokens, which include them")
        if self.reasoning_tokens > self.completion_tokens:
            raise ValueError("reasoningTokens cannot exceed completionTokens, which include them")
        if self.outcome == "billed" and self.generation_id is None:
            raise ValueError("a billed call names its generationId")
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


CreditMode = Literal["none", "credit_then_invoice", "credit_only"]


class CreditLeft(BaseModel):
    """A grant with something left to draw, and the instants it may be drawn in."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    grant_id: UUID
    remaining: Money
    priority: int = Field(ge=1, le=50)
    effective_at: AwareDatetime
    expires_at: AwareDatetime | None = Field(description="null: never expires")


class CreditsChanged(Event):
    """billing: a company's credits changed (event-carried state: the whole account).

    Published with every grant, void, expiry, mode change and batch of draws.
    `revision` grows with every change of the company's credits: a consumer keeps the
    highest it has seen, whatever order the events arrive in. `balance` is what every
    grant has left; `grants` says which of it may be drawn at a given instant
    (`effectiveAt <= t < expiresAt`). A batch of usage names the generations it
    recorded for the company (`countedGenerations`), drawn from or not: a consumer
    that counts its own generations not yet billed stops counting those.
    """

    routing_key: ClassVar[str] = "billing.credits_changed.v1"

    revision: int = Field(ge=1)
    mode: CreditMode
    balance: Money
    low_balance_threshold: Money | None = Field(description="null: no alert")
    grants: list[CreditLeft]
    counted_generations: list[UUID] = Field(
        default_factory=list,
        description=(
            "the generations (QuestionsGenerated eventIds) whose usage this change recorded:"
            " whatever they drew is in `balance`"
        ),
    )


EVENT_TYPES: dict[str, type[Event]] = {
    QuestionsGenerated.routing_key: QuestionsGenerated,
    JobCreated.routing_key: JobCreated,
    LlmCallFinished.routing_key: LlmCallFinished,
}

# Events billing publishes (for the question service's guard: prices, budgets, credits).
BILLING_EVENT_TYPES: dict[str, type[Event]] = {
    PriceChanged.routing_key: PriceChanged,
    BudgetChanged.routing_key: BudgetChanged,
    SpendRecorded.routing_key: SpendRecorded,
    CreditsChanged.routing_key: CreditsChanged,
}
