from __future__ import annotations

from pydantic import Field

from services.servicekit.settings import PublisherSettings


class Settings(PublisherSettings):
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/jobs",
        validation_alias="JOBS_DATABASE_URL",
    )
    port: int = Field(default=8002, validation_alias="JOBS_PORT")
