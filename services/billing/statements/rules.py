"""Pure rules of statements: periods, where a late generation is billed, statement cursors.

A billing period is a calendar month in UTC, written `YYYY-MM`. A generation
belongs to the period of its `occurredAt`, unless that period was already
closed when billing recorded it: then it is billed, as late, in the first open
period from the moment it was recorded on.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from uuid import UUID

PERIOD_FORMAT = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")

# The advisory-lock space of billing periods (the two-int form, which never meets the
# single-bigint keys of the ledger's (company, id) locks).
PERIOD_LOCK_SPACE = 0x5E12


class InvalidPeriod(ValueError):
    """Not a `YYYY-MM` month billing can hold."""


@dataclass(frozen=True, order=True)
class Period:
    year: int
    month: int

    def __post_init__(self) -> None:
        if not (1 <= self.year <= 9998 and 1 <= self.month <= 12):
            raise InvalidPeriod(f"no billing period {self.year:04d}-{self.month:02d}")

    @classmethod
    def parse(cls, text: str) -> Period:
        match = PERIOD_FORMAT.fullmatch(text)
        if match is None:
            raise InvalidPeriod(f"{text!r} is not a month written YYYY-MM, like 2026-11")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, instant: datetime) -> Period:
        """The period an instant falls in (UTC)."""
        if instant.tzinfo is None:
            raise ValueError("a billing instant needs a timezone")
        utc = instant.astimezone(UTC)
        return cls(utc.year, utc.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """Exclusive: the start of the next period."""
        return self.next().start

    def next(self) -> Period:
        return Period(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Period:
        return Period(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def has_ended(self, now: datetime) -> bool:
        return now >= self.end

    @property
    def lock_key(self) -> int:
        """Its advisory-lock key inside `PERIOD_LOCK_SPACE`."""
        return self.year * 12 + self.month - 1


@dataclass(frozen=True)
class Billed:
    """Where a generation is billed: its period, and whether it arrived after that closed."""

    period: Period
    late: bool = False


def bill_in(occurred: Period, closed: Collection[Period], recorded_at: datetime) -> Billed:
    """The period a generation of `occurred` is billed in, given the periods closed now.

    Late usage goes to the period of the moment it is recorded, never earlier than
    the period after its own (a clock behind the closer's must not put it back in a
    closed month), and past any period already closed.
    """
    if occurred not in closed:
        return Billed(occurred)
    target = max(Period.of(recorded_at), occurred.next())
    while target in closed:
        target = target.next()
    return Billed(target, late=True)


# ---------------------------------------------------------------------------
# Adjustments
# ---------------------------------------------------------------------------

FOUR_PLACES = Decimal("0.0001")
MAX_ADJUSTMENT = Decimal("99999999.9999")  # NUMERIC(12, 4)
MAX_REASON = 500


def check_amount(amount: Decimal) -> Decimal:
    """A non-zero amount of at most 4 decimal places that the ledger can hold."""
    try:
        if not amount.is_finite():
            raise ValueError("must be a finite decimal, like -1.0000")
        if amount == 0:
            raise ValueError("must not be zero")
        if amount != amount.quantize(FOUR_PLACES):
            raise ValueError("must have at most 4 decimal places")
    except InvalidOperation as exc:
        raise ValueError(f"must be at most {MAX_ADJUSTMENT} either way") from exc
    if abs(amount) > MAX_ADJUSTMENT:
        raise ValueError(f"must be at most {MAX_ADJUSTMENT} either way")
    return amount.quantize(FOUR_PLACES)


def check_reason(reason: str) -> str:
    if not reason.strip():
        raise ValueError("must say something: 1 to 500 characters, not only spaces")
    if "\x00" in reason:
        raise ValueError("must not contain NUL (U+0000) characters")
    return reason


# ---------------------------------------------------------------------------
# Statement lines: keyset cursors over (cost descending, job id)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LineCursor:
    """After the line (cost, job id) of one company's statement of one period; sealed and
    opened by the API (`servicekit.pagination.CursorSeal`), bound to both."""

    cost: Decimal
    job_id: UUID

    def key(self) -> list[str]:
        return [str(self.cost), str(self.job_id)]

    @classmethod
    def scope(cls, period: Period, company_id: UUID) -> dict[str, object]:
        return {"company": company_id, "period": str(period)}
