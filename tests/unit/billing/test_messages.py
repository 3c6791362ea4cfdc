"""A message read as a ledger entry or told apart as poison; the headers of its failures."""

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from contracts.events import JobCreated, QuestionsGenerated
from services.billing.ledger.messages import (
    ATTEMPTS,
    DEAD_LETTERED_AT,
    DETAIL,
    ORIGINAL_ROUTING_KEY,
    REASON,
    PoisonMessage,
    dead_letter_headers,
    failed_attempts,
    original_routing_key,
    parse,
    retry_headers,
)
from services.billing.ledger.rules import CostOutOfRange, Pricing, draft_key, lock_key, lock_keys
from tests.support.events import generated, job_created

GOOD: dict[str, Any] = generated(uuid.uuid4(), draft="draft-1").model_dump(
    mode="json", by_alias=True
)


def parse_body(body: object, routing_key: str = QuestionsGenerated.routing_key) -> object:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse(routing_key, raw)


def message(
    routing_key: str = "", type_: str | None = None, headers: dict[str, Any] | None = None
) -> Any:
    return SimpleNamespace(routing_key=routing_key, type=type_, headers=headers or {})


def test_a_generation_is_parsed_as_it_is_unpriced_and_unknown_fields_are_ignored() -> None:
    entry = parse_body({**GOOD, "somethingNew": 1})
    assert entry == QuestionsGenerated.model_validate(GOOD)  # priced once, by the ledger


def test_a_job_is_parsed_as_it_is() -> None:
    job = job_created(uuid.uuid4(), draft="draft-1")
    entry = parse_body(job.model_dump_json(by_alias=True).encode(), JobCreated.routing_key)
    assert entry == job


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
        parse_body(body, routing_key)


def test_a_huge_count_is_no_poison_before_a_price_says_so() -> None:
    entry = parse_body({**GOOD, "questionCount": 1_000_000})
    assert isinstance(entry, QuestionsGenerated)


def test_a_cost_the_ledger_cannot_hold_at_its_price_is_poison() -> None:
    event = generated(uuid.uuid4(), questions=1_000_000)
    assert Pricing().bill(event) == Decimal("10000.0000")
    with pytest.raises(CostOutOfRange, match="exceeds") as raised:
        Pricing(price_per_10_questions=Decimal("100")).bill(event)
    assert isinstance(raised.value, PoisonMessage)
    assert str(event.event_id) in str(raised.value)


def test_failed_attempts_are_read_from_the_header_and_count_from_zero() -> None:
    assert failed_attempts(message()) == 0
    assert failed_attempts(message(headers={ATTEMPTS: 2})) == 2
    assert failed_attempts(message(headers={ATTEMPTS: "garbage"})) == 0


def test_a_retry_counts_the_attempt_and_keeps_the_routing_key() -> None:
    sent = message(QuestionsGenerated.routing_key, headers={"other": "kept"})
    headers = retry_headers(sent, 2)
    assert headers == {
        "other": "kept",
        ATTEMPTS: 2,
        ORIGINAL_ROUTING_KEY: QuestionsGenerated.routing_key,
    }
    # Back through the default exchange, the stored key still names the event.
    assert original_routing_key(message("unit.billing.usage", headers=headers)) == (
        QuestionsGenerated.routing_key
    )


def test_a_dead_letter_says_why_when_and_where_it_was_going() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    headers = dead_letter_headers(
        message(routing_key=JobCreated.routing_key), "poison", "x" * 5000, at=at
    )
    assert headers[REASON] == "poison"
    assert headers[DETAIL] == "x" * 1000
    assert headers[ORIGINAL_ROUTING_KEY] == JobCreated.routing_key
    assert headers[DEAD_LETTERED_AT] == at.isoformat()


def test_the_routing_key_of_a_message_published_with_its_type_only() -> None:
    assert original_routing_key(message("unit.billing.usage", "jobs.created.v1")) == (
        "jobs.created.v1"
    )
    assert original_routing_key(message(JobCreated.routing_key, "other")) == JobCreated.routing_key


def test_a_draft_id_is_read_in_its_one_spelling_whoever_published_it() -> None:
    """An older producer's event, or one replayed from the DLQ: its draft id as the client
    spelled it. Read canonical, it meets its job and takes the same advisory lock."""
    company, draft = uuid.uuid4(), uuid.uuid4()
    usage = {**GOOD, "companyId": str(company), "draftJobId": str(draft).upper()}
    job = {**json.loads(job_created(company).to_json()), "draftJobId": "{" + str(draft) + "}"}

    read_usage = parse(QuestionsGenerated.routing_key, json.dumps(usage).encode())
    read_job = parse(JobCreated.routing_key, json.dumps(job).encode())
    assert isinstance(read_usage, QuestionsGenerated)
    assert isinstance(read_job, JobCreated)

    assert read_usage.draft_job_id == read_job.draft_job_id == str(draft)
    assert lock_key(company, str(draft)) in set(lock_keys([read_usage])) & set(
        lock_keys([read_job])
    )
    assert isinstance(read_usage, QuestionsGenerated)
    assert draft_key(read_usage) == str(draft)
