import hashlib
import hmac
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.billing.webhooks.rules import (
    DeliveryPolicy,
    counted_outcome,
    next_attempt,
    retry_delay,
    sign,
    threshold_body,
    threshold_event_id,
    verify,
)

COMPANY = uuid.uuid4()
AT = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def test_one_event_id_per_company_period_and_threshold() -> None:
    first = threshold_event_id(COMPANY, "2026-03", 80)
    assert threshold_event_id(COMPANY, "2026-03", 80) == first
    assert threshold_event_id(COMPANY, "2026-03", 50) != first
    assert threshold_event_id(COMPANY, "2026-04", 80) != first
    assert threshold_event_id(uuid.uuid4(), "2026-03", 80) != first


def test_the_body_says_what_the_contract_says() -> None:
    body = json.loads(threshold_body(COMPANY, "2026-03", 80, Decimal("8.1"), Decimal("10"), AT))
    assert body == {
        "eventId": str(threshold_event_id(COMPANY, "2026-03", 80)),
        "type": "budget.threshold_reached",
        "companyId": str(COMPANY),
        "period": "2026-03",
        "threshold": 80,
        "spent": "8.1000",
        "monthlyLimit": "10.0000",
        "occurredAt": "2026-03-10T08:00:00Z",
    }


def test_the_signature_is_an_hmac_of_timestamp_dot_raw_body() -> None:
    body = '{"a":1}'
    header = sign("s3cret", 1_700_000_000, body)
    expected = hmac.new(b"s3cret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("s3cret", header, body)
    assert not verify("other", header, body)
    assert not verify("s3cret", header, body + " ")
    assert not verify("s3cret", "garbage", body)


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    policy = DeliveryPolicy(first_retry_seconds=5, max_retry_seconds=3600)
    rng = random.Random(7)
    for attempts, step in [(1, 5), (2, 10), (3, 20), (4, 40), (20, 3600), (500, 3600)]:
        delays = [retry_delay(attempts, policy, rng) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_retries_go_on_for_24_hours_then_stop() -> None:
    policy = DeliveryPolicy()
    rng = random.Random(1)
    give_up_at = AT + policy.give_up_after
    now, attempts = AT, 0
    while True:
        attempts += 1
        later = next_attempt(attempts, now, give_up_at, policy, rng)
        if later is None:
            break
        assert later > now
        now = later
    assert now == give_up_at  # the last attempt is made at the end of the 24 hours
    assert 20 < attempts < 60
    assert next_attempt(1, give_up_at + timedelta(seconds=1), give_up_at, policy, rng) is None


def test_an_attempt_that_ends_a_delivery_undelivered_counts_as_given_up() -> None:
    assert counted_outcome("delivered", "delivered") == "delivered"
    assert counted_outcome("failed", "pending") == "failed"  # retried later
    assert counted_outcome("refused", "pending") == "refused"
    assert counted_outcome("failed", "failed") == "gave_up"  # past the 24 hours
    assert counted_outcome("refused", "failed") == "gave_up"  # no webhook URL any more
