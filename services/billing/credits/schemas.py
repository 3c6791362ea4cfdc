"""Credits' request and response bodies. Money is a 4-place decimal string on the wire."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, StrictInt, WithJsonSchema

from services.billing.credits.rules import (
    DEFAULT_PRIORITY,
    MAX_REASON,
    PRIORITY_RANGE,
    check_amount,
    check_reason,
    check_threshold,
)
from services.billing.reads.schemas import CamelModel, Money, Priced

Kind = Literal["purchased", "promotional"]
ModeName = Literal["none", "credit_then_invoice", "credit_only"]
EntryKind = Literal["grant", "draw", "expiry", "void"]

MONEY_IN = {"type": "string", "pattern": r"^\d+(\.\d{1,4})?$", "examples": ["50.0000"]}
# A grant's amount: a decimal string above 0, at most 4 places (a JSON number is also taken).
GrantAmount = Annotated[Decimal, AfterValidator(check_amount), WithJsonSchema(MONEY_IN)]
Threshold = Annotated[Decimal, AfterValidator(check_threshold), WithJsonSchema(MONEY_IN)]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON), AfterValidator(check_reason)]
Priority = Annotated[StrictInt, Field(ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1])]


class GrantRequest(CamelModel):
    model_config = ConfigDict(extra="forbid")

    amount: GrantAmount = Field(description="Above 0, at most 4 decimal places.")
    kind: Kind
    priority: Priority = Field(default=DEFAULT_PRIORITY, description="1 is drawn first.")
    effective_at: AwareDatetime | None = Field(default=None, description="Default: now.")
    expires_at: AwareDatetime | None = Field(default=None, description="null: never.")
    reason: Reason = Field(description="Why: 1 to 500 characters, kept with the grant.")


class GrantFingerprint(CamelModel):
    """What makes two grant requests the same, for `Idempotency-Key`."""

    for_company: UUID
    request: GrantRequest


class VoidFingerprint(CamelModel):
    for_company: UUID
    void_grant: UUID


class Grant(Priced):
    grant_id: UUID
    company_id: UUID
    kind: Kind
    amount: Money
    remaining: Money = Field(description="What is left to draw; 0 once expired or voided.")
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    reason: str
    created_by: str | None = Field(description="The `sub` of the operator's token.")
    created_at: datetime
    voided_at: datetime | None
    expired_at: datetime | None


class CreditModeRequest(CamelModel):
    model_config = ConfigDict(extra="forbid")

    mode: ModeName = Field(description="none (the default) ignores credits.")
    low_balance_threshold: Threshold | None = Field(
        default=None, description="Alert when the balance falls below it; null: no alert."
    )


class CreditModeFingerprint(CamelModel):
    for_company: UUID
    request: CreditModeRequest


class CreditMode(Priced):
    company_id: UUID
    mode: ModeName
    low_balance_threshold: Money | None
    balance: Money


class Credits(Priced):
    balance: Money = Field(description="What the company's grants have left.")
    mode: ModeName
    low_balance_threshold: Money | None
    grants: list[Grant] = Field(description="One page of grants, newest first.")
    next_cursor: str | None


class Entry(CamelModel):
    entry_id: UUID
    kind: EntryKind
    amount: Money = Field(description="Positive, whatever the kind.")
    grant_id: UUID
    usage_id: UUID | None = Field(description="The usage row a draw was for.")
    at: datetime


class Entries(Priced):
    entries: list[Entry] = Field(description="One page of the credit ledger, newest first.")
    next_cursor: str | None
