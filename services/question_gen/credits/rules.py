"""Pure rules of the credit guard: which grants a request may count on, and its room.

Billing draws a usage row's cost from the grants active at its `occurredAt`
(`effectiveAt <= t < expiresAt`). A request reserved now is recorded within its
hold, so it counts only on grants already in effect and still in effect at the end
of its hold (`drawable`). What it may use is what those have left, as billing last
published them, less what this service has generated that billing has not yet
recorded (its spends) and what other requests hold. `store.RESERVE` says it in
SQL, under the account's row lock; `drawable` is the rule its SQL follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

# The one mode in which the question service refuses what credits cannot cover.
ENFORCED_MODE = "credit_only"
# Modes in which billing draws: a generation then counts as not yet billed until billing
# names it as recorded.
NO_CREDITS = "none"


@dataclass(frozen=True, slots=True)
class GrantLeft:
    remaining: Decimal
    effective_at: datetime
    expires_at: datetime | None


def drawable(grants: Iterable[GrantLeft], now: datetime, hold: timedelta) -> Decimal:
    """What the grants a request reserved at `now` may draw from have left."""
    horizon = now + hold
    return sum(
        (
            g.remaining
            for g in grants
            if g.effective_at <= now and (g.expires_at is None or g.expires_at > horizon)
        ),
        Decimal(0),
    )


def counts_as_unbilled(mode: str, cost: Decimal) -> bool:
    """Whether a generation is counted until billing names it as recorded: billing draws
    for it (a credit mode) and it costs something (billing draws nothing for a 0)."""
    return mode != NO_CREDITS and cost > 0


class CreditsExhausted(Exception):
    """The request's worst case exceeds the company's credits less what is reserved."""

    def __init__(self, company_id: UUID, cost: Decimal) -> None:
        super().__init__(
            f"the company's prepaid credits have no room for this request (worst case {cost}); "
            "nothing was generated or billed"
        )
        self.company_id = company_id
        self.cost = cost
