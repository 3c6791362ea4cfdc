import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts.events import EVENT_TYPES, JobCreated, QuestionsGenerated
from contracts.generate import SCHEMA_DIR, documents
from contracts.topology import Topology


def test_events_are_camel_case_on_the_wire() -> None:
    event = JobCreated(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        draft_job_id="d-1",
        created_by=None,
    )
    wire = json.loads(event.to_json())
    assert set(wire) == {
        "eventId",
        "occurredAt",
        "companyId",
        "jobId",
        "draftJobId",
        "createdBy",
        "title",
    }
    assert JobCreated.model_validate_json(event.to_json()) == event


def test_routing_keys_carry_the_version() -> None:
    assert set(EVENT_TYPES) == {"questions.generated.v1", "jobs.created.v1"}


def test_a_generation_must_name_a_job_or_a_draft() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        QuestionsGenerated(
            event_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            company_id=uuid.uuid4(),
            prompt_tokens=1,
            completion_tokens=1,
            total_tokens=2,
            question_count=1,
            model="m",
        )


def test_topology_names_follow_the_contract() -> None:
    topology = Topology()
    assert topology.exchange_name == "events"
    assert topology.billing_queue_name == "billing.usage"
    assert topology.billing_dlq_name == "billing.usage.dlq"
    queue = topology.billing_queue()
    assert queue.arguments["x-queue-type"] == "quorum"
    assert queue.arguments["x-dead-letter-strategy"] == "at-least-once"
    assert queue.arguments["x-overflow"] == "reject-publish"
    assert queue.arguments["x-delivery-limit"] > 0
    assert Topology("t.").billing_queue_name == "t.billing.usage"


def test_generated_documents_are_fresh() -> None:
    """`make docs` writes them; this fails when a model changed and they were not rewritten."""
    for name, text in documents().items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{path.name} missing: run make docs"
        assert path.read_text() == text, f"{path.name} is stale: run make docs"


def test_a_job_title_is_optional_and_bounded() -> None:
    base = {
        "eventId": str(uuid.uuid4()),
        "occurredAt": "2025-06-01T10:00:00Z",
        "companyId": str(uuid.uuid4()),
        "jobId": str(uuid.uuid4()),
    }
    assert JobCreated.model_validate(base).title is None  # as producers sent it before titles
    assert JobCreated.model_validate({**base, "title": "x" * 200}).title == "x" * 200
    for refused in ("", "x" * 201, "a\x00b"):
        with pytest.raises(ValidationError, match="title"):
            JobCreated.model_validate({**base, "title": refused})
