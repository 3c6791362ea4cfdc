"""Pure rules of threshold webhooks: identity, body, signature, retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from services.billing.ledger.rules import format_money

EVENT_TYPE = "budget.threshold_reached"
SIGNATURE_HEADER = "Billing-Signature"
# Namespace of the deliveries' eventIds: one per (company, period, threshold), ever.
THRESHOLD_NAMESPACE = UUID("0c6f6f1e-2f7b-4a53-8d0e-5f3c2a9b7d11")


@dataclass(frozen=True)
class DeliveryPolicy:
    """How long and how often a delivery is tried."""

    timeout_seconds: float = 10.0
    first_retry_seconds: float = 5.0
    max_retry_seconds: float = 3600.0
    give_up_after: timedelta = timedelta(hours=24)
    # Claimed rows are leased this long past the request's timeout: a worker that dies
    # mid-delivery leaves the row to another once the lease runs out.
    lease_margin_seconds: float = 30.0

    @property
    def lease_seconds(self) -> float:
        return self.timeout_seconds + self.lease_margin_seconds


def threshold_event_id(company_id: UUID, period: str, threshold: int) -> UUID:
    """The same eventId on every attempt, and for any process that enqueues it."""
    return uuid.uuid5(THRESHOLD_NAMESPACE, f"{company_id}:{period}:{threshold}")


def threshold_body(
    company_id: UUID,
    period: str,
    threshold: int,
    spent: Decimal,
    monthly_limit: Decimal,
    occurred_at: datetime,
) -> str:
    """The raw body, fixed when enqueued: every retry sends the same bytes."""
    return json.dumps(
        {
            "eventId": str(threshold_event_id(company_id, period, threshold)),
            "type": EVENT_TYPE,
            "companyId": str(company_id),
            "period": period,
            "threshold": threshold,
            "spent": format_money(spent),
            "monthlyLimit": format_money(monthly_limit),
            "occurredAt": occurred_at.isoformat().replace("+00:00", "Z"),
        },
        separators=(",", ":"),
    )


def sign(secret: str, timestamp: int, body: str) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the secret>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in fields or "v1" not in fields or not fields["t"].isdigit():
        return False
    expected = sign(secret, int(fields["t"]), body)
    return hmac.compare_digest(expected, header)


def retry_delay(attempts: int, policy: DeliveryPolicy, rng: random.Random) -> float:
    """Exponential backoff with jitter: after attempt n, wait about first * 2^(n-1), capped.

    "Equal jitter": half the step is fixed, half random, so retries of many
    deliveries spread out but none comes back sooner than half its step.
    """
    growth = 2.0 ** min(max(attempts - 1, 0), 60)
    step: float = min(policy.max_retry_seconds, policy.first_retry_seconds * growth)
    return step / 2 + rng.uniform(0, step / 2)


def next_attempt(
    attempts: int, now: datetime, give_up_at: datetime, policy: DeliveryPolicy, rng: random.Random
) -> datetime | None:
    """When to try again after `attempts` failures, or None once past the 24 hours."""
    if now >= give_up_at:
        return None
    return min(now + timedelta(seconds=retry_delay(attempts, policy, rng)), give_up_at)


def counted_outcome(attempt_outcome: str, delivery_status: str) -> str:
    """An attempt's label in `billing_webhook_attempts_total`: one per recorded attempt.

    The attempt after which billing stops trying without having delivered (past
    the 24 hours, or no webhook URL any more) counts as `gave_up`, so the sum over
    outcomes is the attempts and `gave_up` alone is the deliveries lost.
    """
    if attempt_outcome != "delivered" and delivery_status == "failed":
        return "gave_up"
    return attempt_outcome
