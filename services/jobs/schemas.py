"""HTTP request and response bodies of the jobs service."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from contracts.events import DraftId, JobTitle

MAX_DETAILS_CHARS = 50_000


class CreateJobRequest(BaseModel):
    """Known fields are checked; other job fields are kept as they are, in `details`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    title: JobTitle = Field(description="1 to 200 characters; billing shows it.")
    description: str = Field(default="", max_length=50_000)
    company_id: UUID | None = Field(default=None, description="Optional; must match the token.")
    created_by: str | None = Field(default=None, max_length=320)
    draft_job_id: DraftId | None = Field(
        default=None, description="The draft this job was made from; its usage moves here."
    )

    @model_validator(mode="after")
    def _details_fit(self) -> CreateJobRequest:
        if len(json.dumps(self.details, default=str)) > MAX_DETAILS_CHARS:
            raise ValueError(f"other job fields exceed {MAX_DETAILS_CHARS} characters")
        return self

    @property
    def details(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Job(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: UUID
    company_id: UUID
    title: str
    description: str
    created_by: str | None
    draft_job_id: str | None
    created_at: datetime
    details: dict[str, Any] = Field(default_factory=dict)


class JobPage(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    items: list[Job]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )
