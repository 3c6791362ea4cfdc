import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contracts.events import JobCreated, QuestionsGenerated
from services.billing.intake import PoisonMessage, parse_event
from services.billing.pricing import Pricing

GOOD = {
    "eventId": str(uuid.uuid4()),
    "occurredAt": datetime.now(UTC).isoformat(),
    "companyId": str(uuid.uuid4()),
    "jobId": None,
    "draftJobId": "draft-1",
    "promptTokens": 1,
    "completionTokens": 2,
    "totalTokens": 3,
    "questionCount": 10,
    "model": "gpt-4o",
}


def parse(body: object, routing_key: str = QuestionsGenerated.routing_key):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_event(routing_key, raw, Pricing())


def test_a_valid_event_is_parsed_and_unknown_fields_are_ignored() -> None:
    event = parse({**GOOD, "somethingNew": 1})
    assert isinstance(event, QuestionsGenerated)
    assert event.question_count == 10


@pytest.mark.parametrize(
    ("body", "routing_key", "reason"),
    [
        (b"not json{", QuestionsGenerated.routing_key, "not a valid"),
        ({**GOOD, "questionCount": "ten"}, QuestionsGenerated.routing_key, "questionCount"),
        ({**GOOD, "draftJobId": None}, QuestionsGenerated.routing_key, "at least one"),
        (
            {k: v for k, v in GOOD.items() if k != "companyId"},
            QuestionsGenerated.routing_key,
            "companyId",
        ),
        (GOOD, "something.else.v1", "unknown event type"),
        (GOOD, JobCreated.routing_key, "jobId"),
        (
            {**GOOD, "occurredAt": "2026-01-01T00:00:00"},
            QuestionsGenerated.routing_key,
            "occurredAt",
        ),
        ({**GOOD, "questionCount": 10**9}, QuestionsGenerated.routing_key, "questionCount"),
    ],
)
def test_poison_is_told_apart_with_a_reason(body: object, routing_key: str, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        parse(body, routing_key)


def test_a_cost_that_cannot_be_stored_is_poison() -> None:
    body = json.dumps({**GOOD, "questionCount": 1_000_000}).encode()
    with pytest.raises(PoisonMessage, match="exceeds"):
        parse_event(
            QuestionsGenerated.routing_key, body, Pricing(price_per_10_questions=Decimal("100"))
        )
