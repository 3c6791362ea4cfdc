"""The events, v1. camelCase on the wire, snake_case in Python.

Evolve additively: a new optional field stays v1 (consumers ignore fields they
do not know); a breaking change is a new class with a `.v2` routing key.
"""

from __future__ import annotations

from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

INT32_MAX = 2_147_483_647

TokenCount = Annotated[int, Field(ge=0, le=INT32_MAX)]
# PostgreSQL text cannot hold U+0000: refused up front, before any LLM is paid for.
DraftId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]


class Event(BaseModel):
    """What every event carries. `eventId` is also the AMQP `message_id`."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    routing_key: ClassVar[str]

    event_id: UUID
    occurred_at: AwareDatetime
    company_id: UUID

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class QuestionsGenerated(Event):
    """Questions were generated for a job or a draft, and must be billed once."""

    routing_key: ClassVar[str] = "questions.generated.v1"

    job_id: UUID | None = Field(
        default=None,
        description="The client's jobId: a saved job's id, or a draft's UUID sent as jobId.",
    )
    draft_job_id: DraftId | None = None
    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    total_tokens: TokenCount
    question_count: int = Field(ge=1, le=1_000_000)
    model: str = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _names_a_job_or_draft(self) -> QuestionsGenerated:
        if self.job_id is None and self.draft_job_id is None:
            raise ValueError("at least one of jobId and draftJobId is required")
        return self


class JobCreated(Event):
    """A job was saved, possibly from a draft whose usage should move onto it."""

    routing_key: ClassVar[str] = "jobs.created.v1"

    job_id: UUID
    draft_job_id: DraftId | None = None
    created_by: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    QuestionsGenerated.routing_key: QuestionsGenerated,
    JobCreated.routing_key: JobCreated,
}
