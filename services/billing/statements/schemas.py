"""Statements' request and response bodies. Money is a 4-place decimal string on the wire."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, Field, WithJsonSchema

from services.billing.reads.schemas import CamelModel, JobTitle, Money, Priced
from services.billing.statements.rules import MAX_REASON, check_amount, check_reason

StatementStatus = Literal["open", "closed"]


class StatementTotals(CamelModel):
    question_count: int
    cost: Money


class StatementLine(CamelModel):
    job_id: UUID
    job_title: JobTitle
    question_count: int
    cost: Money


class StatementDrafts(CamelModel):
    count: int = Field(description="Drafts whose usage of the period waits for its job.")
    question_count: int
    cost: Money


class StatementLate(CamelModel):
    count: int = Field(
        description="Generations of an already closed period, billed in this one "
        "(included in `totals`, and in `lines` or `drafts`)."
    )
    cost: Money


class StatementCredits(CamelModel):
    applied: Money = Field(description="Prepaid credits drawn by the period's usage.")


class Adjustment(Priced):
    id: UUID
    company_id: UUID
    period: str = Field(description="The open period it landed in, YYYY-MM.")
    amount: Money = Field(description="Negative: a credit; positive: a charge.")
    reason: str
    usage_id: UUID | None
    job_id: UUID | None
    created_by: str | None = Field(description="The `sub` of the operator's token.")
    created_at: datetime


class AdjustmentList(Priced):
    adjustments: list[Adjustment]


class Statement(Priced):
    period: str
    status: StatementStatus
    closed_at: datetime | None
    totals: StatementTotals = Field(description="All usage billed in the period.")
    lines: list[StatementLine] = Field(description="One page of jobs, by cost descending.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page of lines; null at the end."
    )
    drafts: StatementDrafts
    late: StatementLate
    adjustments: list[Adjustment]
    total: Money = Field(description="Usage plus adjustments.")
    credits: StatementCredits
    amount_due: Money = Field(description="`total` less credits applied.")


class ClosedPeriod(CamelModel):
    period: str
    status: Literal["closed"] = "closed"
    closed_at: datetime


# An amount as the contract writes it: a decimal string (a JSON number is also taken).
Amount = Annotated[
    Decimal,
    AfterValidator(check_amount),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d{1,4})?$", "examples": ["-1.0000"]}),
]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON), AfterValidator(check_reason)]


class AdjustmentRequest(CamelModel):
    amount: Amount = Field(description="Non-zero, at most 4 decimal places.")
    reason: Reason = Field(description="Why: 1 to 500 characters, kept in the audit trail.")
    usage_id: UUID | None = Field(default=None, description="A usage row of the company.")
    job_id: UUID | None = Field(default=None, description="A job of the company.")


class AdjustmentFingerprint(CamelModel):
    """What makes two adjustment requests the same, for `Idempotency-Key`."""

    for_company: UUID
    request: AdjustmentRequest
