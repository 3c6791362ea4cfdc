import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts.events import (
    EVENT_TYPES,
    JobCreated,
    LlmCallFinished,
    QuestionsGenerated,
    canonical_draft_id,
)
from contracts.generate import SCHEMA_DIR, documents
from contracts.topology import Topology
from tests.support.events import llm_call


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
    assert set(EVENT_TYPES) == {
        "questions.generated.v1",
        "jobs.created.v1",
        "questions.llm_call.v1",
    }
    assert set(Topology().billing_bindings()) == set(EVENT_TYPES)


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


DRAFT = uuid.UUID("c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e")
SPELLINGS = [
    "c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e",
    "C263101C-7E1D-4B8A-9F3E-2D5A6B7C8D9E",
    "{c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e}",
    "{C263101C-7E1D-4B8A-9F3E-2D5A6B7C8D9E}",
    "urn:uuid:c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e",
    "URN:UUID:C263101C-7E1D-4B8A-9F3E-2D5A6B7C8D9E",
    "c263101c7e1d4b8a9f3e2d5a6b7c8d9e",
    "C263101C7E1D4B8A9F3E2D5A6B7C8D9E",
    "{c263101c7e1d4b8a9f3e2d5a6b7c8d9e}",
]
NOT_UUIDS = [
    "draft-42",
    "d-1",
    "c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9",  # a digit short
    "c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9eff",  # too long
    "g263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e",  # not hex
    " c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e",  # kept as sent: spaces are part of the id
    "{c263101c-7e1d-4b8a-9f3e-2d5a6b7c8d9e",  # unbalanced
    "c263101c-7e1d4b8a-9f3e-2d5a6b7c8d9e",  # hyphens out of place
    "urn:uuid:draft-42",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_draft_id_that_is_a_uuid_is_canonical_whatever_its_spelling(spelling: str) -> None:
    assert canonical_draft_id(spelling) == str(DRAFT)
    job = JobCreated(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        draft_job_id=spelling,
    )
    assert job.draft_job_id == str(DRAFT)
    wire = json.loads(job.to_json())
    assert wire["draftJobId"] == str(DRAFT)
    # What a consumer reads is canonical too, whoever published it (an older producer).
    assert JobCreated.model_validate({**wire, "draftJobId": spelling}).draft_job_id == str(DRAFT)


@pytest.mark.parametrize("draft", NOT_UUIDS)
def test_a_draft_id_that_is_not_a_uuid_stays_as_sent(draft: str) -> None:
    assert canonical_draft_id(draft) == draft
    generated = QuestionsGenerated(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=uuid.uuid4(),
        draft_job_id=draft,
        prompt_tokens=1,
        completion_tokens=1,
        total_tokens=2,
        question_count=1,
        model="m",
    )
    assert generated.draft_job_id == draft


def test_a_draft_id_spelled_as_the_job_id_is_the_same_text() -> None:
    """The front end's jobId (a UUID field) and a draftJobId meet as one string."""
    job_id = uuid.UUID("{C263101C-7E1D-4B8A-9F3E-2D5A6B7C8D9E}")
    assert canonical_draft_id("C263101C7E1D4B8A9F3E2D5A6B7C8D9E") == str(job_id)


def test_an_llm_call_is_camel_case_on_the_wire_with_the_providers_figures() -> None:
    call = llm_call(uuid.uuid4(), prompt_tokens=1000, cached_prompt_tokens=400, reasoning_tokens=50)
    wire = json.loads(call.to_json())
    assert set(wire) == {
        "eventId",
        "occurredAt",
        "companyId",
        "model",
        "outcome",
        "generationId",
        "promptTokens",
        "cachedPromptTokens",
        "completionTokens",
        "reasoningTokens",
        "usageSource",
    }
    assert LlmCallFinished.model_validate_json(call.to_json()) == call


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cachedPromptTokens": 101}, "cachedPromptTokens cannot exceed promptTokens"),
        ({"reasoningTokens": 201}, "reasoningTokens cannot exceed completionTokens"),
        ({"generationId": None}, "a billed call names its generationId"),
        ({"outcome": "refused"}, "outcome"),
        ({"usageSource": "guessed"}, "usageSource"),
        ({"model": ""}, "model"),
        ({"promptTokens": -1}, "promptTokens"),
    ],
)
def test_an_llm_call_that_cannot_be_true_is_refused(
    changes: dict[str, object], message: str
) -> None:
    wire = json.loads(llm_call(uuid.uuid4()).to_json())
    with pytest.raises(ValidationError, match=message):
        LlmCallFinished.model_validate({**wire, **changes})


def test_a_call_not_billed_needs_no_generation() -> None:
    call = llm_call(uuid.uuid4(), outcome="timeout")
    assert call.generation_id is None
    assert call.cached_prompt_tokens == 0


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
