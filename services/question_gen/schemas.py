"""HTTP request and response bodies of the question service."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from contracts.events import DraftId

MAX_QUESTIONS = 50


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class GenerateQuestionsRequest(CamelModel):
    company_id: UUID | None = Field(default=None, description="Optional; must match the token.")
    job_id: UUID | None = Field(
        default=None, description="A saved job's id, or the draft's UUID (as the front end sends)."
    )
    draft_job_id: DraftId | None = Field(default=None, description="The draft's id, when known.")
    job_description: str = Field(min_length=1, max_length=20_000)
    number_of_questions: int = Field(default=10, ge=1, le=MAX_QUESTIONS)

    @model_validator(mode="after")
    def _names_a_job_or_draft(self) -> GenerateQuestionsRequest:
        if self.job_id is None and self.draft_job_id is None:
            raise ValueError("at least one of jobId and draftJobId is required")
        return self


class Question(CamelModel):
    text: str


class TokenUsage(CamelModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class GenerateQuestionsResponse(CamelModel):
    generation_id: UUID = Field(description="Equal to the eventId of the QuestionsGenerated event.")
    questions: list[Question]
    question_count: int
    usage: TokenUsage
    model: str
    job_id: UUID | None
    draft_job_id: str | None
