"""Pure rules of prepaid credits: which grants a usage row draws from, how much, when to alert.

Burn-down order (the contract's): `priority` (1 first), then the soonest `expiresAt`
(none last), then the oldest `effectiveAt`, then `grantId`. A row draws its cost from
the grants active at its occurredAt (`effectiveAt <= occurredAt < expiresAt`, with
something left), one after another, possibly from several; what they cannot cover is
left to the invoice. Money is `Decimal` with 4 places.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Literal
from uuid import UUID

FOUR_PLACES = Decimal("0.0001")
ZERO = Decimal("0.0000")
MAX_AMOUNT = Decimal("99999999999999.9999")  # NUMERIC(18, 4)
MAX_REASON = 500
PRIORITY_RANGE = (1, 50)
DEFAULT_PRIORITY = 10

Mode = Literal["none", "credit_then_invoice", "credit_only"]
# Modes in which billing draws: in `none` credits are ignored.
DRAWING_MODES: frozenset[str] = frozenset({"credit_then_invoice", "credit_only"})


@dataclass(frozen=True)
class Grant:
    """What a draw needs to know of a grant."""

    grant_id: UUID
    remaining: Decimal
    priority: int
    effective_at: datetime
    expires_at: datetime | None

    def active_at(self, instant: datetime) -> bool:
        return self.effective_at <= instant and (
            self.expires_at is None or instant < self.expires_at
        )


def burn_down_key(grant: Grant) -> tuple[int, bool, datetime, datetime, str]:
    """Sorts grants in the order they are drawn from."""
    expires = grant.expires_at or grant.effective_at  # only compared when both expire
    return (
        grant.priority,
        grant.expires_at is None,
        expires,
        grant.effective_at,
        str(grant.grant_id),
    )


@dataclass(frozen=True)
class Charge:
    """A usage row to draw for: its cost at its occurredAt."""

    event_id: UUID
    occurred_at: datetime
    cost: Decimal


@dataclass(frozen=True)
class Draw:
    event_id: UUID
    grant_id: UUID
    amount: Decimal


@dataclass
class BurnDown:
    """The draws of a company's charges, and what each grant has left after them."""

    draws: list[Draw] = field(default_factory=list)
    left: dict[UUID, Grant] = field(default_factory=dict)

    @property
    def drawn(self) -> Decimal:
        return sum((draw.amount for draw in self.draws), ZERO)


def burn_down(grants: Iterable[Grant], charges: Sequence[Charge]) -> BurnDown:
    """Draw each charge, oldest first, from the grants active at its occurredAt, in order.

    Charges are taken by (occurredAt, eventId), so the same batch draws the same way
    whoever records it. A charge no active grant can cover draws what they have.
    """
    ordered = sorted(grants, key=burn_down_key)
    result = BurnDown(left={grant.grant_id: grant for grant in ordered})
    for charge in sorted(charges, key=lambda c: (c.occurred_at, str(c.event_id))):
        owed = charge.cost
        for grant in ordered:
            if owed <= 0:
                break
            current = result.left[grant.grant_id]
            if current.remaining <= 0 or not current.active_at(charge.occurred_at):
                continue
            amount = min(owed, current.remaining)
            result.draws.append(Draw(charge.event_id, grant.grant_id, amount))
            result.left[grant.grant_id] = replace(current, remaining=current.remaining - amount)
            owed -= amount
    return result


# ---------------------------------------------------------------------------
# Validation of what an operator asks for
# ---------------------------------------------------------------------------


def check_amount(amount: Decimal) -> Decimal:
    """Above zero, at most 4 decimal places, and what the ledger can hold."""
    try:
        if not amount.is_finite():
            raise ValueError("must be a finite decimal, like 50.0000")
        if amount <= 0:
            raise ValueError("must be above zero")
        if amount != amount.quantize(FOUR_PLACES):
            raise ValueError("must have at most 4 decimal places")
    except InvalidOperation as exc:
        raise ValueError(f"must be at most {MAX_AMOUNT}") from exc
    if amount > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}")
    return amount.quantize(FOUR_PLACES)


def check_threshold(threshold: Decimal | None) -> Decimal | None:
    """Zero or more, at most 4 decimal places; None: no alert."""
    if threshold is None:
        return None
    try:
        if not threshold.is_finite() or threshold < 0:
            raise ValueError("must be a decimal of zero or more, like 5.0000")
        if threshold != threshold.quantize(FOUR_PLACES):
            raise ValueError("must have at most 4 decimal places")
    except InvalidOperation as exc:
        raise ValueError(f"must be at most {MAX_AMOUNT}") from exc
    if threshold > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}")
    return threshold.quantize(FOUR_PLACES)


def check_reason(reason: str) -> str:
    if not reason.strip():
        raise ValueError("must say something: 1 to 500 characters, not only spaces")
    if "\x00" in reason:
        raise ValueError("must not contain NUL (U+0000) characters")
    return reason


def check_window(effective_at: datetime, expires_at: datetime | None) -> None:
    """A grant must start before it expires."""
    if expires_at is not None and expires_at <= effective_at:
        raise ValueError("must be after effectiveAt")


# ---------------------------------------------------------------------------
# The low-balance alert
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """Whether to send the low-balance webhook now, and whether it stays sent."""

    send: bool
    alerted: bool


def low_balance(
    balance: Decimal,
    threshold: Decimal | None,
    alerted: bool,
    *,
    mode: str,
    granted: bool = False,
    new_threshold: bool = False,
) -> Alert:
    """Once when the balance first falls below the threshold; again only once re-armed.

    Re-armed by a grant that lifts the balance to the threshold or above, or by a new
    threshold (a new alert, whatever the balance). In mode `none` credits are ignored:
    nothing is sent.
    """
    if new_threshold or (granted and (threshold is None or balance >= threshold)):
        alerted = False
    if mode not in DRAWING_MODES or threshold is None:
        return Alert(send=False, alerted=alerted)
    if balance < threshold and not alerted:
        return Alert(send=True, alerted=True)
    return Alert(send=False, alerted=alerted)


# Namespace of the low-balance webhooks' eventIds: one per (company, alert number).
LOW_BALANCE_NAMESPACE = UUID("5b0f3c8e-7a1d-4c2e-9f6b-2d8e4a1c7b30")
LOW_BALANCE_EVENT_TYPE = "credits.low_balance"


def low_balance_event_id(company_id: UUID, alert: int) -> UUID:
    """The same eventId on every attempt of the company's `alert`-th low-balance webhook."""
    return uuid.uuid5(LOW_BALANCE_NAMESPACE, f"{company_id}:low-balance:{alert}")


def low_balance_body(
    company_id: UUID, alert: int, balance: Decimal, threshold: Decimal, occurred_at: datetime
) -> str:
    """The raw body, fixed when enqueued: every retry sends the same bytes."""
    return json.dumps(
        {
            "eventId": str(low_balance_event_id(company_id, alert)),
            "type": LOW_BALANCE_EVENT_TYPE,
            "companyId": str(company_id),
            "balance": str(balance.quantize(FOUR_PLACES)),
            "threshold": str(threshold.quantize(FOUR_PLACES)),
            "occurredAt": occurred_at.isoformat().replace("+00:00", "Z"),
        },
        separators=(",", ":"),
    )
